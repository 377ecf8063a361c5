BG_DIR = "results/background_study"
BG_RUN_DIR = f"{BG_DIR}/runs/{{run}}"


rule background_study:
    input:
        background_targets() if BG_ENABLED else [],


rule background_generate_set:
    output:
        dataset=f"{BG_DIR}/set.pt",
    log:
        "results/logs/background_study/generate_set.log",
    conda:
        "../envs/robustflow.yaml"
    threads: study_resources("background_study")["threads"]
    resources:
        mem_mb=study_resources("background_study")["mem_mb"],
    params:
        config=background_job_config(config, dataset_only=True),
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
    threads: study_resources("background_study")["threads"]
    resources:
        gpu=study_resources("background_study")["gpu"],
        mem_mb=study_resources("background_study")["mem_mb"],
        runtime=study_resources("background_study")["runtime"],
    params:
        config=background_job_config(config),
        model_spec=lambda wildcards: background_model_spec(wildcards.run),
        run=lambda wildcards: BG_RUNS[wildcards.run],
        checkpoint_dir=f"{BG_RUN_DIR}/snapshots",
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
    threads: study_resources("background_study")["threads"]
    resources:
        gpu=study_resources("background_study")["gpu"],
        mem_mb=study_resources("background_study")["mem_mb"],
    params:
        config=background_job_config(config),
        model_spec=lambda wildcards: background_model_spec(wildcards.run),
        run=lambda wildcards: BG_RUNS[wildcards.run],
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
    threads: study_resources("background_study")["threads"]
    resources:
        gpu=study_resources("background_study")["gpu"],
        mem_mb=study_resources("background_study")["mem_mb"],
    params:
        config=background_job_config(config),
        model_spec=lambda wildcards: background_model_spec(wildcards.run),
        run=lambda wildcards: BG_RUNS[wildcards.run],
        checkpoint_dir=f"{BG_RUN_DIR}/snapshots",
    script:
        "../scripts/background_influence.py"


rule background_aggregate:
    input:
        accuracy=expand(rules.background_evaluate.output.accuracy, run=BG_RUNS),
        history=expand(rules.background_train.output.history, run=BG_RUNS),
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
            category="Background study",
            labels={"table": "claims"},
        ),
        proponents="results/tables/background_influence_proponents.csv",
    log:
        "results/logs/background_study/aggregate.log",
    conda:
        "../envs/robustflow.yaml"
    params:
        config={
            "device": config["device"],
            "background_study": config["background_study"],
        },
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
            category="Background study",
            labels={"figure": "{figure}"},
        ),
    log:
        "results/logs/background_study/figure/{figure}.log",
    wildcard_constraints:
        figure="|".join(BG_FIGURES),
    conda:
        "../envs/robustflow.yaml"
    params:
        config=background_job_config(config),
    script:
        "../scripts/background_figure.py"


rule background_saliency_grid:
    input:
        saliency=lambda wildcards: expand(
            rules.background_evaluate.output.saliency,
            run=background_saliency_runs(wildcards.model),
        ),
    output:
        pdf="results/figures/background_saliency_grid_{model}.pdf",
        png=report(
            "results/figures/background_saliency_grid_{model}.png",
            caption="../report/background_saliency_grid.rst",
            category="Background study",
            labels={"figure": "saliency_grid", "model": "{model}"},
        ),
    log:
        "results/logs/background_study/figure/saliency_grid_{model}.log",
    conda:
        "../envs/robustflow.yaml"
    script:
        "../scripts/background_saliency_grid.py"


rule background_influence_grid:
    input:
        samples=lambda wildcards: expand(
            rules.background_influence.output.samples,
            run=background_influence_run(wildcards.model),
        ),
    output:
        pdf="results/figures/background_influence_grid_{model}.pdf",
        png=report(
            "results/figures/background_influence_grid_{model}.png",
            caption="../report/background_influence_grid.rst",
            category="Background study",
            labels={"figure": "influence_grid", "model": "{model}"},
        ),
    log:
        "results/logs/background_study/figure/influence_grid_{model}.log",
    conda:
        "../envs/robustflow.yaml"
    script:
        "../scripts/background_influence_grid.py"
