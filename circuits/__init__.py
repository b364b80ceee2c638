"""Causal interventions on any hooked model: patching, ablation, circuit finding."""
