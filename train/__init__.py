"""vjepa_vlm.train"""
