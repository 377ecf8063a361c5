LR_CELL_DIR = "results/learning_rule_study/cells/{method}_{constraint}"


rule learning_rule_study:
    input:
        learning_rule_targets() if config["learning_rule_study"]["enabled"] else [],


rule learning_rule_cell:
    output:
        metrics=f"{LR_CELL_DIR}/metrics.csv",
        noise=f"{LR_CELL_DIR}/noise.csv",
        sweep=f"{LR_CELL_DIR}/lr_sweep.csv",
        weights=f"{LR_CELL_DIR}/weights.npz",
    log:
        "results/logs/learning_rule_study/cell/{method}_{constraint}.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources("learning_rule_study")["threads"]
    resources:
        gpu=study_resources("learning_rule_study")["gpu"],
        mem_mb=study_resources("learning_rule_study")["mem_mb"],
        runtime=study_resources("learning_rule_study")["runtime"],
    params:
        study=learning_rule_job_config(config),
        constraint=lambda wildcards: parse_constraint_id(wildcards.constraint),
    script:
        "../scripts/learning_rule_cell.py"


rule learning_rule_aggregate:
    input:
        metrics=expand(rules.learning_rule_cell.output.metrics, zip, **LR_CELLS),
        noise=expand(rules.learning_rule_cell.output.noise, zip, **LR_CELLS),
        sweep=expand(rules.learning_rule_cell.output.sweep, zip, **LR_CELLS),
    output:
        metrics="results/tables/learning_rule_metrics.csv",
        noise="results/tables/learning_rule_noise.csv",
        sweep="results/tables/learning_rule_lr_sweep.csv",
        summary="results/tables/learning_rule_summary.csv",
        claims="results/tables/learning_rule_claims.csv",
        claims_md=report(
            "results/tables/learning_rule_claims.md",
            caption="../report/learning_rule_claims.rst",
            category="Learning-rule study",
            labels={"table": "claims"},
        ),
    log:
        "results/logs/learning_rule_study/aggregate.log",
    conda:
        "../envs/robustflow.yaml"
    params:
        task=config["learning_rule_study"]["task"],
    script:
        "../scripts/learning_rule_aggregate.py"


rule learning_rule_figure:
    input:
        metrics=rules.learning_rule_aggregate.output.metrics,
        noise=rules.learning_rule_aggregate.output.noise,
        sweep=rules.learning_rule_aggregate.output.sweep,
        weights=expand(rules.learning_rule_cell.output.weights, zip, **LR_CELLS),
    output:
        pdf="results/figures/learning_rule_{figure}.pdf",
        png=report(
            "results/figures/learning_rule_{figure}.png",
            caption="../report/learning_rule_figure.rst",
            category="Learning-rule study",
            labels={"figure": "{figure}"},
        ),
    log:
        "results/logs/learning_rule_study/figure/{figure}.log",
    conda:
        "../envs/robustflow.yaml"
    params:
        config=learning_rule_job_config(config),
        cells=[cell_id(m, parse_constraint_id(c)) for m, c in zip(*LR_CELLS.values())],
    script:
        "../scripts/learning_rule_figure.py"
