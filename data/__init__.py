"""vjepa_vlm.data"""
