"""vjepa_vlm.eval"""
