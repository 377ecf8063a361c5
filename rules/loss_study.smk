LOSS = "loss_study"
LOSS_RUN = "results/loss_study/runs/{run}"


rule loss_study:
    input:
        study_targets(LOSS),


rule loss_train:
    output:
        model=f"{LOSS_RUN}/model.pt",
        history=f"{LOSS_RUN}/history.csv",
    log:
        "results/logs/loss_study/train/{run}.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources(LOSS)["threads"]
    resources:
        gpu=study_resources(LOSS)["gpu"],
        mem_mb=study_resources(LOSS)["mem_mb"],
        runtime=study_resources(LOSS)["runtime"],
    params:
        config=step_config(LOSS, "train"),
        job=job_of(LOSS),
    script:
        "../scripts/loss_train.py"


rule loss_evaluate:
    input:
        model=rules.loss_train.output.model,
    output:
        noise=f"{LOSS_RUN}/noise_eval.csv",
        confidence=f"{LOSS_RUN}/confidence.csv",
    log:
        "results/logs/loss_study/evaluate/{run}.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources(LOSS)["threads"]
    resources:
        gpu=study_resources(LOSS)["gpu"],
        mem_mb=study_resources(LOSS)["mem_mb"],
    params:
        config=step_config(LOSS, "evaluate"),
        job=job_of(LOSS),
    script:
        "../scripts/loss_evaluate.py"


rule loss_aggregate:
    input:
        history=expand(rules.loss_train.output.history, run=RUNS[LOSS]),
        noise=expand(rules.loss_evaluate.output.noise, run=RUNS[LOSS]),
        confidence=expand(rules.loss_evaluate.output.confidence, run=RUNS[LOSS]),
    output:
        history="results/tables/loss_history.csv",
        noise="results/tables/loss_noise.csv",
        confidence="results/tables/loss_confidence.csv",
        summary="results/tables/loss_summary.csv",
        claims=report(
            "results/tables/loss_claims.csv",
            caption="../report/loss_claims.rst",
            category=STUDY_TITLES[LOSS],
            labels={"table": "claims (CSV)"},
        ),
    log:
        "results/logs/loss_study/aggregate.log",
    conda:
        "../envs/robustflow.yaml"
    params:
        config=step_config(LOSS, "aggregate"),
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
            category=STUDY_TITLES[LOSS],
            labels={"figure": "{figure}"},
        ),
    log:
        "results/logs/loss_study/figure/{figure}.log",
    conda:
        "../envs/robustflow.yaml"
    params:
        config=step_config(LOSS, "figure"),
        job=job_of(LOSS),
    script:
        "../scripts/loss_figure.py"
