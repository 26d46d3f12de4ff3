"""The pipeline's stages: one module each, holding the stage's library call and its command.

``dvc.yaml`` runs ``stages/<stage>.py`` (which runs the module's ``command``), the
``facerec`` CLI registers the same commands, and the Prefect flows run ``dvc repro <stage>``.
"""

# dvc.yaml's stages in pipeline order (detect, align and gate are foreach groups, one stage
# per photo set; evalset and evaluate one per evaluation set; evaluate_zoo a matrix, one per
# zoo entry and evaluation set: `dvc repro <name>` runs a group).
STAGES: tuple[str, ...] = ("detect", "align", "gate", "detect_report", "train", "evalset", "evaluate", "benchmark",
                           "evaluate_zoo", "benchmark_zoo", "leaderboard", "monitor", "tune")
