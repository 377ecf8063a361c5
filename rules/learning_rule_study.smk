LR = "learning_rule_study"
LR_CELL = "results/learning_rule_study/cells/{variant}"
# A cell (variant) trains all its seeds in one job: see the study's plan.
LR_CELLS = VARIANTS[LR]


rule learning_rule_study:
    input:
        study_targets(LR),


rule learning_rule_cell:
    output:
        metrics=f"{LR_CELL}/metrics.csv",
        noise=f"{LR_CELL}/noise.csv",
        sweep=f"{LR_CELL}/lr_sweep.csv",
        weights=f"{LR_CELL}/weights.npz",
    log:
        "results/logs/learning_rule_study/cell/{variant}.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources(LR)["threads"]
    resources:
        gpu=study_resources(LR)["gpu"],
        mem_mb=study_resources(LR)["mem_mb"],
        runtime=study_resources(LR)["runtime"],
    params:
        config=step_config(LR, "cell"),
        job=job_of(LR),
    script:
        "../scripts/learning_rule_cell.py"


rule learning_rule_aggregate:
    input:
        metrics=expand(rules.learning_rule_cell.output.metrics, variant=LR_CELLS),
        noise=expand(rules.learning_rule_cell.output.noise, variant=LR_CELLS),
        sweep=expand(rules.learning_rule_cell.output.sweep, variant=LR_CELLS),
    output:
        metrics="results/tables/learning_rule_metrics.csv",
        noise="results/tables/learning_rule_noise.csv",
        sweep="results/tables/learning_rule_lr_sweep.csv",
        summary="results/tables/learning_rule_summary.csv",
        claims=report(
            "results/tables/learning_rule_claims.csv",
            caption="../report/learning_rule_claims.rst",
            category=STUDY_TITLES[LR],
            labels={"table": "claims (CSV)"},
        ),
    log:
        "results/logs/learning_rule_study/aggregate.log",
    conda:
        "../envs/robustflow.yaml"
    params:
        config=step_config(LR, "aggregate"),
    script:
        "../scripts/learning_rule_aggregate.py"


rule learning_rule_figure:
    input:
        metrics=rules.learning_rule_aggregate.output.metrics,
        noise=rules.learning_rule_aggregate.output.noise,
        sweep=rules.learning_rule_aggregate.output.sweep,
        weights=expand(rules.learning_rule_cell.output.weights, variant=LR_CELLS),
    output:
        pdf="results/figures/learning_rule_{figure}.pdf",
        png=report(
            "results/figures/learning_rule_{figure}.png",
            caption="../report/learning_rule_figure.rst",
            category=STUDY_TITLES[LR],
            labels={"figure": "{figure}"},
        ),
    log:
        "results/logs/learning_rule_study/figure/{figure}.log",
    conda:
        "../envs/robustflow.yaml"
    params:
        config=step_config(LR, "figure"),
        job=job_of(LR),
    script:
        "../scripts/learning_rule_figure.py"
