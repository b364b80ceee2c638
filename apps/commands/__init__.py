"""CLI command modules.

Each module here registers its commands on the sub-apps defined in
`apps.cli_base` (`probe_app`, `train_app`, `eval_app`, `report_app`, ...). `apps.cli`
imports every module in this package, so adding a capability's commands never
means editing a shared file.
"""
