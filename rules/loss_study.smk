LOSS_DIR = "results/loss_study/runs/{run}"
# Aggregation and figures read only this study's section (dataset, baseline): edits to other
# studies must not redraw them.
LOSS_SUMMARY_CONFIG = {"loss_study": config["loss_study"]}


rule loss_study:
    input:
        loss_study_targets() if config["loss_study"]["enabled"] else [],


rule loss_train:
    output:
        model=f"{LOSS_DIR}/model.pt",
        history=f"{LOSS_DIR}/history.csv",
    log:
        "results/logs/loss_study/train/{run}.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources("loss_study")["threads"]
    resources:
        gpu=study_resources("loss_study")["gpu"],
        mem_mb=study_resources("loss_study")["mem_mb"],
        runtime=study_resources("loss_study")["runtime"],
    params:
        checkpoint_dir=f"{LOSS_DIR}/checkpoints",
        run=lambda wildcards: run_record(LOSS_RUNS, wildcards.run),
        config=loss_job_config(config),
    script:
        "../scripts/loss_train.py"


rule loss_evaluate:
    input:
        model=rules.loss_train.output.model,
    output:
        noise=f"{LOSS_DIR}/noise_eval.csv",
        confidence=f"{LOSS_DIR}/confidence.csv",
    log:
        "results/logs/loss_study/evaluate/{run}.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources("loss_study")["threads"]
    resources:
        gpu=study_resources("loss_study")["gpu"],
        mem_mb=study_resources("loss_study")["mem_mb"],
    params:
        run=lambda wildcards: run_record(LOSS_RUNS, wildcards.run),
        config=loss_job_config(config, noise_suite=True),
    script:
        "../scripts/loss_evaluate.py"


rule loss_aggregate:
    input:
        history=expand(rules.loss_train.output.history, run=LOSS_RUN_IDS),
        noise=expand(rules.loss_evaluate.output.noise, run=LOSS_RUN_IDS),
        confidence=expand(rules.loss_evaluate.output.confidence, run=LOSS_RUN_IDS),
    output:
        history="results/tables/loss_history.csv",
        noise="results/tables/loss_noise.csv",
        confidence="results/tables/loss_confidence.csv",
        summary="results/tables/loss_summary.csv",
        claims=report(
            "results/tables/loss_claims.csv",
            caption="../report/loss_claims.rst",
            category="Loss study",
            labels={"table": "claims"},
        ),
    log:
        "results/logs/loss_study/aggregate.log",
    conda:
        "../envs/robustflow.yaml"
    params:
        config=LOSS_SUMMARY_CONFIG,
    script:
        "../scripts/loss_aggregate.py"


rule loss_figure:
    input:
        history=rules.loss_aggregate.output.history,
        noise=rules.loss_aggregate.output.noise,
        confidence=rules.loss_aggregate.output.confidence,
    output:
        pdf="results/figures/loss_{figure}.pdf",
        png=report(
            "results/figures/loss_{figure}.png",
            caption="../report/loss_figure.rst",
            category="Loss study",
            labels={"figure": "{figure}"},
        ),
    log:
        "results/logs/loss_study/figure/{figure}.log",
    conda:
        "../envs/robustflow.yaml"
    params:
        config=LOSS_SUMMARY_CONFIG,
    script:
        "../scripts/loss_figure.py"
