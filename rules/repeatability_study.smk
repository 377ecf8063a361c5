REP = "repeatability_study"
REP_DIR = "results/repeatability_study"
REP_RUN = f"{REP_DIR}/runs/{{run}}"
REP_TABLES = ["perturbations", "translate", "shifts", "predictions", "corruptions"]


rule repeatability_study:
    input:
        study_targets(REP),


rule repeatability_prepare_sequences:
    output:
        manifest=f"{REP_DIR}/cifar10p/manifest.json",
    log:
        "results/logs/repeatability_study/prepare_sequences.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources(REP)["threads"]
    resources:
        mem_mb=study_resources(REP)["mem_mb"],
    params:
        config=step_config(REP, "prepare_sequences"),
    script:
        "../scripts/repeatability_prepare_sequences.py"


rule repeatability_prepare_cifar10c:
    output:
        manifest=f"{REP_DIR}/cifar10c/manifest.json",
    log:
        "results/logs/repeatability_study/prepare_cifar10c.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources(REP)["threads"]
    resources:
        mem_mb=study_resources(REP)["mem_mb"],
    params:
        config=step_config(REP, "prepare_cifar10c"),
    script:
        "../scripts/repeatability_prepare_cifar10c.py"


rule repeatability_train:
    output:
        model=f"{REP_RUN}/model.pt",
        history=f"{REP_RUN}/history.csv",
    log:
        "results/logs/repeatability_study/train/{run}.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources(REP)["threads"]
    resources:
        gpu=study_resources(REP)["gpu"],
        mem_mb=study_resources(REP)["mem_mb"],
        runtime=study_resources(REP)["runtime"],
    params:
        config=step_config(REP, "train"),
        job=job_of(REP),
    script:
        "../scripts/repeatability_train.py"


rule repeatability_evaluate:
    input:
        model=rules.repeatability_train.output.model,
        sequences=rules.repeatability_prepare_sequences.output.manifest,
        cifar10c=rules.repeatability_prepare_cifar10c.output.manifest,
    output:
        **{table: f"{REP_RUN}/{table}.csv" for table in REP_TABLES},
    log:
        "results/logs/repeatability_study/evaluate/{run}.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources(REP)["threads"]
    resources:
        gpu=study_resources(REP)["gpu"],
        mem_mb=study_resources(REP)["mem_mb"],
    params:
        config=step_config(REP, "evaluate"),
        job=job_of(REP),
    script:
        "../scripts/repeatability_evaluate.py"


rule repeatability_aggregate:
    input:
        **{
            table: expand(f"{REP_RUN}/{table}.csv", run=RUNS[REP])
            for table in REP_TABLES
        },
        history=expand(rules.repeatability_train.output.history, run=RUNS[REP]),
    output:
        history="results/tables/repeatability_history.csv",
        perturbations="results/tables/repeatability_perturbations.csv",
        shifts="results/tables/repeatability_shifts.csv",
        corruptions="results/tables/repeatability_corruptions.csv",
        translate="results/tables/repeatability_translate.csv",
        runs="results/tables/repeatability_runs.csv",
        agreement="results/tables/repeatability_agreement.csv",
        summary="results/tables/repeatability_summary.csv",
        claims=report(
            "results/tables/repeatability_claims.csv",
            caption="../report/repeatability_claims.rst",
            category=STUDY_TITLES[REP],
            labels={"table": "claims (CSV)"},
        ),
    log:
        "results/logs/repeatability_study/aggregate.log",
    conda:
        "../envs/robustflow.yaml"
    params:
        config=step_config(REP, "aggregate"),
    script:
        "../scripts/repeatability_aggregate.py"


rule repeatability_figure:
    input:
        perturbations=rules.repeatability_aggregate.output.perturbations,
        translate=rules.repeatability_aggregate.output.translate,
        shifts=rules.repeatability_aggregate.output.shifts,
        runs=rules.repeatability_aggregate.output.runs,
        agreement=rules.repeatability_aggregate.output.agreement,
    output:
        pdf="results/figures/repeatability_{figure}.pdf",
        png=report(
            "results/figures/repeatability_{figure}.png",
            caption="../report/repeatability_figure.rst",
            category=STUDY_TITLES[REP],
            labels={"figure": "{figure}"},
        ),
    log:
        "results/logs/repeatability_study/figure/{figure}.log",
    conda:
        "../envs/robustflow.yaml"
    params:
        config=step_config(REP, "figure"),
        job=job_of(REP),
    script:
        "../scripts/repeatability_figure.py"
