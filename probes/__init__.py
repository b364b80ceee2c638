"""Hook-based measurement of in-context learning on pretrained (and toy) models."""
