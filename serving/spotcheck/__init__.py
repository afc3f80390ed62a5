"""Double random, one public (双随机、一公开): check items, the two pools, verifiable draws,
joint visits, results and their publication (../shared/DOMAIN.md §7).

- `items`: the check-item list and the ratio presets (YAML, validated).
- `workdays`: the Chinese working-day calendar (deadlines of 20 working days).
- `draw`: the sampling design itself: a pure function of (parameters, pool snapshot, seed).
- `plans`: snapshots, storage, replay and verification, results → records.
- `export`: the list as CSV and Excel with Chinese column headers.
"""
