"""Neural parts of the method: PaliGemma backbone, action expert, masks, flow matching, the VLA."""
