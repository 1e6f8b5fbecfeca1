"""vjepa_vlm.vision"""
