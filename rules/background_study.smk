BG = "background_study"
BG_DIR = "results/background_study"
BG_RUN_DIR = f"{BG_DIR}/runs/{{run}}"
BG_INFLUENCE_RUNS = (
    [run["run"] for run in PLANS[BG].influence_runs(config)] if BG in ENABLED else []
)


rule background_study:
    input:
        study_targets(BG),


rule background_generate_set:
    output:
        dataset=f"{BG_DIR}/set.pt",
    log:
        "results/logs/background_study/generate_set.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources(BG)["threads"]
    resources:
        mem_mb=study_resources(BG)["mem_mb"],
    params:
        config=step_config(BG, "generate_set"),
    script:
        "../scripts/background_generate_set.py"


rule background_train:
    input:
        dataset=rules.background_generate_set.output.dataset,
    output:
        model=f"{BG_RUN_DIR}/model.pt",
        history=f"{BG_RUN_DIR}/history.csv",
    log:
        "results/logs/background_study/train/{run}.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources(BG)["threads"]
    resources:
        gpu=study_resources(BG)["gpu"],
        mem_mb=study_resources(BG)["mem_mb"],
        runtime=study_resources(BG)["runtime"],
    params:
        config=step_config(BG, "train"),
        job=job_of(BG),
    script:
        "../scripts/background_train.py"


rule background_evaluate:
    input:
        dataset=rules.background_generate_set.output.dataset,
        model=rules.background_train.output.model,
    output:
        accuracy=f"{BG_RUN_DIR}/accuracy.csv",
        saliency=f"{BG_RUN_DIR}/saliency.npz",
    log:
        "results/logs/background_study/evaluate/{run}.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources(BG)["threads"]
    resources:
        gpu=study_resources(BG)["gpu"],
        mem_mb=study_resources(BG)["mem_mb"],
    params:
        config=step_config(BG, "evaluate"),
        job=job_of(BG),
    script:
        "../scripts/background_evaluate.py"


rule background_influence:
    input:
        dataset=rules.background_generate_set.output.dataset,
        model=rules.background_train.output.model,
    output:
        influence=f"{BG_RUN_DIR}/influence.csv",
        samples=f"{BG_RUN_DIR}/influence.npz",
    log:
        "results/logs/background_study/influence/{run}.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources(BG)["threads"]
    resources:
        gpu=study_resources(BG)["gpu"],
        mem_mb=study_resources(BG)["mem_mb"],
    params:
        config=step_config(BG, "influence"),
        job=job_of(BG),
    script:
        "../scripts/background_influence.py"


rule background_aggregate:
    input:
        accuracy=expand(rules.background_evaluate.output.accuracy, run=RUNS[BG]),
        history=expand(rules.background_train.output.history, run=RUNS[BG]),
        influence=expand(
            rules.background_influence.output.influence, run=BG_INFLUENCE_RUNS
        ),
    output:
        accuracy="results/tables/background_accuracy.csv",
        history="results/tables/background_history.csv",
        influence="results/tables/background_influence.csv",
        gaps="results/tables/background_gaps.csv",
        summary="results/tables/background_summary.csv",
        gap_summary="results/tables/background_gap_summary.csv",
        claims=report(
            "results/tables/background_claims.csv",
            caption="../report/background_claims.rst",
            category=STUDY_TITLES[BG],
            labels={"table": "claims (CSV)"},
        ),
        proponents="results/tables/background_influence_proponents.csv",
    log:
        "results/logs/background_study/aggregate.log",
    conda:
        "../envs/robustflow.yaml"
    params:
        config=step_config(BG, "aggregate"),
    script:
        "../scripts/background_aggregate.py"


rule background_figure:
    input:
        accuracy=rules.background_aggregate.output.accuracy,
        gaps=rules.background_aggregate.output.gaps,
    output:
        pdf="results/figures/background_{figure}.pdf",
        png=report(
            "results/figures/background_{figure}.png",
            caption="../report/background_figure.rst",
            category=STUDY_TITLES[BG],
            labels={"figure": "{figure}"},
        ),
    log:
        "results/logs/background_study/figure/{figure}.log",
    wildcard_constraints:
        figure="|".join(PLANS[BG].FIGURES),
    conda:
        "../envs/robustflow.yaml"
    params:
        config=step_config(BG, "figure"),
        job=job_of(BG),
    script:
        "../scripts/background_figure.py"


rule background_saliency_grid:
    input:
        saliency=lambda wildcards: expand(
            rules.background_evaluate.output.saliency,
            run=PLANS[BG].saliency_grid_runs(config, wildcards.model),
        ),
    output:
        pdf="results/figures/background_saliency_grid_{model}.pdf",
        png=report(
            "results/figures/background_saliency_grid_{model}.png",
            caption="../report/background_saliency_grid.rst",
            category=STUDY_TITLES[BG],
            labels={"figure": "saliency_grid", "model": "{model}"},
        ),
    log:
        "results/logs/background_study/figure/saliency_grid_{model}.log",
    conda:
        "../envs/robustflow.yaml"
    params:
        config=step_config(BG, "saliency_grid"),
        job=job_of(BG),
    script:
        "../scripts/background_saliency_grid.py"


rule background_influence_grid:
    input:
        samples=lambda wildcards: expand(
            rules.background_influence.output.samples,
            run=PLANS[BG].influence_grid_run(config, wildcards.model),
        ),
    output:
        pdf="results/figures/background_influence_grid_{model}.pdf",
        png=report(
            "results/figures/background_influence_grid_{model}.png",
            caption="../report/background_influence_grid.rst",
            category=STUDY_TITLES[BG],
            labels={"figure": "influence_grid", "model": "{model}"},
        ),
    log:
        "results/logs/background_study/figure/influence_grid_{model}.log",
    conda:
        "../envs/robustflow.yaml"
    params:
        config=step_config(BG, "influence_grid"),
        job=job_of(BG),
    script:
        "../scripts/background_influence_grid.py"
