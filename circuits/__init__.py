"""Causal interventions on any hooked model: patching, ablation, circuit finding.

- `tasks`: clean / corrupted prompt tasks (IOI, few-shot ICL, induction) and `make_task`.
- `metrics`: logit difference normalised so clean = 1 and corrupted = 0.
- `patching`: the generic batched activation-patching core (`run_variants`) and sweeps.
- `attribution`: attribution patching (node form) and EAP (edge form), `agreement`.
- `path_patching`: sender head -> receiver heads via q / k / v.
- `ablation`: zero / mean / resample ablation, knock-outs, ablation curves.
- `circuit_finder`: smallest head set keeping a fraction of the metric, with faithfulness.
- `nnsight_interop`: the residual patching experiment written with nnsight.
- `study`: everything above for one model and task (behind `iclens report attribution`).

Everything addresses the model by hook names only, so it runs on a TransformerBridge
and on any HookedRootModule toy model.
"""
