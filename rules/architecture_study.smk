ARCH = "architecture_study"
ARCH_DIR = PLANS[ARCH].STUDY_DIR
ARCH_RUN_DIR = f"{ARCH_DIR}/runs/{{run}}"
ARCH_GROUPS = list(PLANS[ARCH].finetune_groups(config)) if ARCH in ENABLED else []


rule architecture_study:
    input:
        study_targets(ARCH),


rule architecture_prepare_cifar10c:
    output:
        manifest=f"{ARCH_DIR}/cifar10c/manifest.json",
    log:
        "results/logs/architecture_study/prepare_cifar10c.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources(ARCH)["threads"]
    resources:
        mem_mb=study_resources(ARCH)["mem_mb"],
    params:
        config=step_config(ARCH, "prepare_cifar10c"),
    script:
        "../scripts/architecture_prepare_cifar10c.py"


rule architecture_pretrain:
    output:
        model=PLANS[ARCH].PRETRAINED_MODEL,
        history=f"{ARCH_DIR}/pretrain/{{model}}-s{{seed}}_history.csv",
    log:
        "results/logs/architecture_study/pretrain/{model}-s{seed}.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources(ARCH)["threads"]
    resources:
        gpu=study_resources(ARCH)["gpu"],
        mem_mb=study_resources(ARCH)["mem_mb"],
        runtime=study_resources(ARCH)["runtime"],
    params:
        config=step_config(ARCH, "pretrain"),
        job=job_of(ARCH),
    script:
        "../scripts/architecture_pretrain.py"


rule architecture_train:
    input:
        pretrained=lambda wildcards: PLANS[ARCH].source_task_weights(
            config, RUNS[ARCH][wildcards.run]
        ),
    output:
        model=f"{ARCH_RUN_DIR}/model.pt",
        history=f"{ARCH_RUN_DIR}/history.csv",
        test=f"{ARCH_RUN_DIR}/test.csv",
    log:
        "results/logs/architecture_study/train/{run}.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources(ARCH)["threads"]
    resources:
        gpu=study_resources(ARCH)["gpu"],
        mem_mb=study_resources(ARCH)["mem_mb"],
        runtime=study_resources(ARCH)["runtime"],
    params:
        config=step_config(ARCH, "train"),
        job=job_of(ARCH),
    script:
        "../scripts/architecture_train.py"


rule architecture_evaluate:
    input:
        model=rules.architecture_train.output.model,
        manifest=rules.architecture_prepare_cifar10c.output.manifest,
    output:
        robustness=f"{ARCH_RUN_DIR}/robustness.csv",
    log:
        "results/logs/architecture_study/evaluate/{run}.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources(ARCH)["threads"]
    resources:
        gpu=study_resources(ARCH)["gpu"],
        mem_mb=study_resources(ARCH)["mem_mb"],
    params:
        config=step_config(ARCH, "evaluate"),
        job=job_of(ARCH),
    script:
        "../scripts/architecture_evaluate.py"


rule architecture_finetune:
    input:
        model=rules.architecture_train.output.model,
        manifest=rules.architecture_prepare_cifar10c.output.manifest,
    output:
        finetune=f"{ARCH_RUN_DIR}/finetune_{{group}}.csv",
    log:
        "results/logs/architecture_study/finetune/{run}_{group}.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources(ARCH)["threads"]
    resources:
        gpu=study_resources(ARCH)["gpu"],
        mem_mb=study_resources(ARCH)["mem_mb"],
        runtime=study_resources(ARCH)["runtime"],
    params:
        config=step_config(ARCH, "finetune"),
        job=job_of(ARCH),
    script:
        "../scripts/architecture_finetune.py"


rule architecture_aggregate:
    input:
        history=expand(rules.architecture_train.output.history, run=RUNS[ARCH]),
        test=expand(rules.architecture_train.output.test, run=RUNS[ARCH]),
        robustness=expand(rules.architecture_evaluate.output.robustness, run=RUNS[ARCH]),
        finetune=expand(
            rules.architecture_finetune.output.finetune,
            run=RUNS[ARCH],
            group=ARCH_GROUPS,
        ),
    output:
        history="results/tables/architecture_history.csv",
        robustness="results/tables/architecture_robustness.csv",
        finetune="results/tables/architecture_finetune.csv",
        runs="results/tables/architecture_runs.csv",
        corruption_errors="results/tables/architecture_corruption_errors.csv",
        summary="results/tables/architecture_summary.csv",
        claims=report(
            "results/tables/architecture_claims.csv",
            caption="../report/architecture_claims.rst",
            category=STUDY_TITLES[ARCH],
            labels={"table": "claims (CSV)"},
        ),
    log:
        "results/logs/architecture_study/aggregate.log",
    conda:
        "../envs/robustflow.yaml"
    params:
        config=step_config(ARCH, "aggregate"),
    script:
        "../scripts/architecture_aggregate.py"


rule architecture_figure:
    input:
        history=rules.architecture_aggregate.output.history,
        robustness=rules.architecture_aggregate.output.robustness,
        finetune=rules.architecture_aggregate.output.finetune,
        runs=rules.architecture_aggregate.output.runs,
    output:
        pdf="results/figures/architecture_{figure}.pdf",
        png=report(
            "results/figures/architecture_{figure}.png",
            caption="../report/architecture_figure.rst",
            category=STUDY_TITLES[ARCH],
            labels={"figure": "{figure}"},
        ),
    log:
        "results/logs/architecture_study/figure/{figure}.log",
    conda:
        "../envs/robustflow.yaml"
    params:
        config=step_config(ARCH, "figure"),
        job=job_of(ARCH),
    script:
        "../scripts/architecture_figure.py"
