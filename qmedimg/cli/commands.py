"""What each ``qmedimg`` command does with its parsed arguments: call one function of the package and
print its result."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qmedimg.errors import QmedimgError


def _overrides(args: argparse.Namespace) -> dict:
    """Entry keys replaced from the command line (only those given)."""
    transpile = {k: getattr(args, k) for k in ("optimization_level", "layout_method", "routing_method",
                                                "initial_layout", "seed_transpiler", "approximation_degree")
                 if getattr(args, k) is not None}
    if args.dd:
        transpile["dynamical_decoupling"] = {"sequence": args.dd}
    out = {k: v for k, v in {"shots": args.shots, "noise_scale": args.noise_scale}.items() if v is not None}
    if args.shots == "none":
        out["shots"] = None  # exact expectation values, whatever the entry says
    if transpile:
        out["transpile"] = transpile
    return out


def _executor(args: argparse.Namespace):
    from qmedimg.executor import get_executor

    return get_executor(args.executor, args.ray_address)


def _check_given_threshold(args: argparse.Namespace, sources: list[dict]) -> None:
    """A ``--threshold`` given on a multi-class task is refused in one line, 0.5 too. The run's config
    holds 0.5 whether or not it was given, so the check that refuses other values cannot see an explicit
    0.5: it is checked here, where "given" is still known, on each data source (loaded once more, only then)."""
    from qmedimg.data import MULTI_LABEL, load_dataset
    from qmedimg.rundir import TrainConfig

    if args.threshold is None or args.threshold != TrainConfig.model_fields["threshold"].default:
        return  # not given, or a value the run's own check sees
    data_keys = ("dataset", "data_file", "data_root", "size", "classes", "limit")
    for source in sources:
        dataset = load_dataset(**{k: v for k, v in source.items() if k in data_keys})  # the task, whatever the seed
        if dataset.task not in ("binary-class", MULTI_LABEL):
            raise QmedimgError(f"--threshold {args.threshold}: {dataset.name} is {dataset.task} "
                               f"({dataset.num_classes} classes, decided by the most probable one); a decision "
                               "threshold is for binary-class and multi-label tasks: drop --threshold")


def cmd_train(args: argparse.Namespace) -> None:
    from qmedimg.rundir import make_config
    from qmedimg.workflows.train import resume, train

    if args.resume:
        metrics = resume(args.resume, progress=not args.quiet, device=args.device)
        out = args.resume
    else:
        if not args.out:
            raise QmedimgError("train needs --out DIR (or --resume DIR)")
        fields = {k: v for k, v in {
            "dataset": args.dataset, "data_file": args.data_file, "data_root": args.data_root,
            "size": args.size, "classes": args.classes, "class_names": args.class_names, "limit": args.limit,
            "circuit": args.circuit, "qubits": args.qubits, "layers": args.layers, "head": args.head, "backbone": args.backbone,
            "model": args.model, "angle_map": args.angle_map, "readout": args.readout,
            "dropout": args.dropout, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "weight_decay": args.weight_decay, "select": args.select, "class_weights": args.class_weights,
            "balanced_sampling": args.balanced_sampling, "threshold": args.threshold,
            "augment": args.augment, "seed": args.seed, "out": args.out, "backend": args.backend,
            "noise_scale": args.noise_scale, "backends_file": args.backends, "amp": args.amp or None,
        }.items() if v is not None}
        config = make_config(**fields)
        _check_given_threshold(args, [fields])
        metrics = train(config, progress=not args.quiet, device=args.device)
        out = args.out
    test, p = metrics["test"], metrics["parameters"]
    print(f"test ACC {test['acc']:.4f}  AUC {test['auc']:.4f}  F1 {test['f1']:.4f}  "
          f"(epoch {metrics['selected_epoch']} kept: {metrics['selection']})")
    if test.get("sensitivity") is not None and "test_intervals" in metrics:
        low, high = metrics["test_intervals"]["acc"]
        print(f"sensitivity {test['sensitivity']:.4f}  specificity {test['specificity']:.4f}  ECE {test['ece']:.3f}; "
              f"ACC 95 % bootstrap interval [{low:.4f}, {high:.4f}] over {metrics['test_intervals']['draws']} resamples")
    chosen = metrics.get("threshold") or {}
    if chosen.get("rule") not in (None, "fixed", "most probable class"):
        half, value = metrics["at_threshold_0.5"]["test"], chosen["value"]
        shown = f"{value:.4f}" if isinstance(value, float) else " ".join(f"{v:.2f}" for v in value)
        print(f"decision threshold {shown} ({chosen['rule']}: {chosen['meaning']}); at 0.5 the test ACC would be "
              f"{half['acc']:.4f}, F1 {half['f1']:.4f}")
    print(f"parameters: {p['quantum']} quantum + {p['classical']} classical = {p['total']}; "
          f"{metrics['train_samples_per_s']:.0f} train samples/s; wall {metrics['wall_time_s']:.1f} s")
    if metrics.get("head_usage"):
        u = metrics["head_usage"]["test"]
        zero = f"; zero-gradient weights {len(u['zero_gradient_weights'])} of {u['weights']}" if "weights" in u else ""
        print(f"head on the test split: effective dimension {u['effective_dimension']:.2f} of {u['outputs']} "
              f"outputs; input angle std {' '.join(f'{s:.2f}' for s in u['angle_std'])}, saturated "
              f"{max(u['angle_saturated']):.0%} at most{zero}")
    print(f"run written to {out}/ (metrics.json, history.csv, learning_curves.png, confusion.png)")


def cmd_evaluate(args: argparse.Namespace) -> Path | None:
    from qmedimg.workflows.evaluate import evaluate_run

    result = evaluate_run(args.run_dir, args.backend, backends_file=args.backends, limit=args.test_limit,
                          data_file=args.data_file, dry_run=args.dry_run, resume=args.collect_jobs,
                          progress=not args.quiet, device=args.device, **_overrides(args))
    if args.dry_run:
        d, t = result["dry_run"], result["transpile"]
        print(f"dry run on {result['backend']} ({result['device']}): nothing submitted")
        print(f"  {d['jobs']} job(s) of at most {d['rows_per_job']} images (IBM job limits), {d['pubs_per_job']} PUB "
              f"each, {d['parameter_rows']} parameter rows "
              f"(one per image), {d['observables']} observables, {d['shots_per_row']} shots per row")
        print(f"  twirling randomizations {d['twirling_randomizations']}, ZNE factors {d['zne_noise_factors']}, "
              f"measurement mitigation {d['measure_mitigation']}")
        print(f"  circuit: physical qubits {t['physical_qubits']}, depth {t['depth']}, "
              f"{t['two_qubit_gates']} two-qubit gates, estimated fidelity {t['estimated_fidelity']}")
        print(f"  estimated QPU time ~{d['estimated_qpu_seconds']} s ({d['estimate_note']})")
        print("  sent per image: the head's input angles only (no pixels, names or labels)")
        return
    test, ideal = result["test"], result["ideal_test"]
    chosen = result["threshold"]
    at = f" (at the run's threshold {chosen['value']:.4f}, {chosen['rule']})" if chosen["rule"] not in (
        "fixed", "most probable class") and isinstance(chosen["value"], float) else ""
    of = f" of {args.data_file}" if args.data_file else ""
    print(f"{result['backend']} ({result['device']}), {result['images']} test images{of}: "
          f"ACC {test['acc']:.4f}  AUC {test['auc']:.4f}  F1 {test['f1']:.4f}{at}")
    spread = result.get("test_statistical_error")
    if spread:
        print(f"  statistical error of the noise trajectories: ACC {spread['acc']:.4f}  AUC {spread['auc']:.4f}")
    print(f"ideal (exact) on the same images:  ACC {ideal['acc']:.4f}  AUC {ideal['auc']:.4f}  "
          f"F1 {ideal['f1']:.4f}   Δ ACC {test['acc'] - ideal['acc']:+.4f}  Δ AUC {test['auc'] - ideal['auc']:+.4f}")
    tr = result.get("transpile")
    if tr:
        print(f"circuit: physical qubits {tr['physical_qubits']}, depth {tr['depth']}, {tr['two_qubit_gates']} "
              f"two-qubit gates, estimated fidelity {tr['estimated_fidelity']}; "
              f"mean |Δ expectation| {result['mean_abs_expectation_error']:.4f}")
    if result.get("jobs"):
        print(f"jobs: {', '.join(str(j['job_id']) for j in result['jobs'])}; QPU seconds {result['qpu_seconds']}")
    if "prediction" in result:
        print(_prediction_line(result["prediction"], result.get("qpu_vs_simulator")) + f"; `qmedimg report "
              f"{args.run_dir}` writes qpu_vs_simulator.md")
    print(f"{result['images_per_s']:.0f} images/s (after {result['setup_s']:.1f} s set-up); written to {result['path']}")
    return Path(result["path"])  # the eval file, for --track


def cmd_backends(args: argparse.Namespace) -> None:
    from qmedimg.backends.registry import get_backend, load_backends, registry_path

    if args.out is not None and args.action != "snapshot":
        raise QmedimgError("--out is for `qmedimg backends snapshot NAME --out FILE`")
    if args.action == "snapshot":
        from datetime import datetime, timezone

        from qmedimg.backends.snapshots import default_snapshot_path, entry_snapshot, snapshot_date, write_snapshot

        entries = load_backends(args.backends)
        if args.name not in entries:
            raise QmedimgError(f"backends snapshot needs the NAME of an entry of {registry_path(args.backends)} "
                               f"(an ibm entry); valid: {', '.join(entries)}")
        now = datetime.now(timezone.utc)
        snapshot = entry_snapshot(args.name, entries[args.name], taken_at=now)  # nothing is written if this fails
        out = write_snapshot(args.out if args.out is not None else default_snapshot_path(snapshot["device"], now),
                             snapshot)
        print(f"{args.name}: {snapshot['device']}, calibrated {snapshot_date(snapshot)}, snapshot taken "
              f"{snapshot['taken_at']} -> {out}")
        print(f"simulate it: a fake entry with `calibration: {out}` (relative to the registry file's folder)")
        return
    if args.action == "check":
        if not args.name:
            raise QmedimgError("backends check needs a NAME (see `qmedimg backends`)")
        for line in get_backend(args.name, args.backends).describe().check():
            print(line)
        return
    from qmedimg.backends.listing import listing_row

    entries = load_backends(args.backends, runtime_options=False)  # `backends check NAME` checks Runtime's options
    rows = [listing_row(name, entry) for name, entry in entries.items()]
    print(f"{'name':<26}{'kind':<7}{'device':<16}{'qubits':>7}  {'2q gate':<8}options")
    for r in rows:
        print(f"{r['name']:<26}{r['kind']:<7}{r['device']:<16}{r['qubits']!s:>7}  {r['2q gate']:<8}{r['options']}")
    print(f"registry: {registry_path(args.backends)}; check one: qmedimg backends check NAME")


def cmd_transpile(args: argparse.Namespace) -> None:
    from qmedimg.backends import get_backend
    from qmedimg.quantum.circuits import load_circuit

    backend = get_backend(args.backend, args.backends, **_overrides(args))
    if not backend.describe().transpiles:
        raise QmedimgError(f"backend '{backend.name}' is {backend.kind}: nothing to transpile for (pick a fake or ibm entry)")
    if (Path(args.source) / "config.json").is_file():
        from qmedimg.rundir import load_run

        spec = load_run(args.source).model.spec
    else:
        spec = load_circuit(args.source, qubits=args.qubits, layers=args.layers)
    r = backend.describe(spec).transpile
    print(f"{r['circuit']} on {r['backend']} ({r['device']}):")
    print(f"  physical qubits {r['physical_qubits']}")
    print(f"  depth {r['depth']}, two-qubit gates {r['two_qubit_gates']}, ops {r['ops']}")
    print(f"  estimated circuit fidelity {r['estimated_fidelity']} (product of 1 - error over gates and readout)")
    if r.get("calibration"):
        print(f"  calibration: {r['calibration']}")


def cmd_noise_study(args: argparse.Namespace) -> None:
    from qmedimg.workflows.noise_study import noise_study, parse_list

    out = noise_study(
        args.run_dirs + args.compare_run, backends=parse_list(args.backend, str, "backend"),
        scales=parse_list(args.scales, float, "scales"), mitigations=parse_list(args.mitigation, str, "mitigation"),
        shots=parse_list(args.shots, int, "shots"),
        optimization_levels=parse_list(args.optimization_levels, int, "optimization-levels", valid=[0, 1, 2, 3]),
        repeats=args.repeats, backends_file=args.backends, limit=args.test_limit, out=args.out,
        allow_qpu=args.allow_qpu, dry_run=args.dry_run, progress=not args.quiet,
        executor=_executor(args), threads=args.threads, device=args.device, cross_check=args.cross_check)
    if args.dry_run:
        plan = json.loads(out.read_text())
        print(plan["plan"])
        for on in dict.fromkeys(p["plan"]["planned_on"] for p in plan["plans"] if "planned_on" in p.get("plan", {})):
            print(f"  QPU points planned on {on}")
        print(f"dry run: {plan['points']} grid points, estimated QPU time {plan['estimated_qpu_seconds']:.0f} s "
              f"(real-QPU points only; nothing submitted); written to {out}")
        return
    print((out / "summary.md").read_text())
    drift = ", accuracy_vs_calibration.png" if (out / "accuracy_vs_calibration.png").exists() else ""
    print(f"written to {out}/ (results.csv, accuracy_vs_noise.png, expectation_error.png{drift}, summary.md)")


def cmd_width_study(args: argparse.Namespace) -> None:
    from qmedimg.workflows.noise_study import parse_list
    from qmedimg.workflows.width_study import parse_grid, width_study

    data = {k: v for k, v in {"dataset": args.dataset, "data_file": args.data_file, "data_root": args.data_root,
                              "size": args.size, "classes": args.classes, "limit": args.limit}.items()
            if v is not None}
    out = width_study(
        data, qubits=parse_grid(args.qubits, "qubits"), layers=parse_grid(args.layers, "layers"),
        seeds=parse_grid(args.seeds, "seeds"), circuit=args.circuit,
        backends=parse_list(args.backend, str, "backend"), scales=parse_list(args.scales, float, "scales"),
        mitigations=parse_list(args.mitigation, str, "mitigation"), shots=parse_list(args.shots, int, "shots"),
        optimization_level=args.optimization_level, backends_file=args.backends, test_limit=args.test_limit,
        max_memory_gb=args.max_memory, out=args.out, progress=not args.quiet,
        executor=_executor(args), threads=args.threads, device=args.device, cross_check=args.cross_check,
        noise_aware=args.noise_aware, dry_run=args.dry_run, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    if args.dry_run:
        print(out)
        return
    print((out / "summary.md").read_text())
    plots = "accuracy_lost.png, accuracy_lost_by_strategy.png" if args.noise_aware else "accuracy_lost.png"
    print(f"written to {out}/ (results.csv, accuracy_vs_circuit.png, {plots}, summary.md; runs/)")


def cmd_compare(args: argparse.Namespace) -> None:
    from qmedimg.workflows.compare import compare, parse_seeds

    data = {k: v for k, v in {"dataset": args.dataset, "data_file": args.data_file, "data_root": args.data_root,
                              "size": args.size, "classes": args.classes, "limit": args.limit}.items()
            if v is not None}
    if args.datasets:
        if args.dataset or args.data_file:
            raise QmedimgError("--datasets replaces --dataset/--data-file: give one of them")
        data = [{**data, "dataset": flag.strip()} for flag in args.datasets.split(",")]
    _check_given_threshold(args, [data] if isinstance(data, dict) else data)
    out = compare(data, seeds=parse_seeds(args.seeds), models=[m for m in args.models.split(",") if m],
                  circuits=args.circuits.split(","), out=args.out, progress=not args.quiet,
                  executor=_executor(args), threads=args.threads, device=args.device, dry_run=args.dry_run,
                  epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, qubits=args.qubits, layers=args.layers,
                  amp=args.amp or None, threshold=args.threshold, balanced_sampling=args.balanced_sampling or None)
    if args.dry_run:
        print(out)
        return
    if args.datasets:
        print((out / "summary.md").read_text())
        print(f"written to {out}/ (summary.md, summary.csv; per dataset: <flag>/comparison.md, ...)")
        return
    print((out / "comparison.md").read_text())
    print(f"written to {out}/ (comparison.md, comparison.csv, runs.csv, paired.csv, learning_curves.png, confusion-*.png)")


def cmd_predict(args: argparse.Namespace) -> None:
    from qmedimg.workflows.export import beside, is_exported, opened_run
    from qmedimg.workflows.predict import predict

    folder = any(Path(p).is_dir() for p in args.inputs)
    out = args.out or (str(beside(args.run_dir, "predictions.csv")) if folder else None)  # results stay with the run
    if is_exported(args.run_dir) and args.backend and not args.dry_run:
        from qmedimg.backends import get_backend

        if get_backend(args.backend, args.backends).spends_qpu_time:  # its job ledger would go with the temporary copy
            raise QmedimgError(f"{args.run_dir}: a QPU backend keeps its job ledger in the run directory: unzip the "
                               f"exported run into one first (unzip {args.run_dir} -d DIR)")
    with opened_run(args.run_dir) as run_dir:
        result = predict(run_dir, args.inputs, backend=args.backend, backends_file=args.backends, out=out,
                         progress=not args.quiet, dry_run=args.dry_run, device=args.device)
    for line in result["errors"]:
        print(f"skipped: {line}", file=sys.stderr)
    if "dry_run" in result:
        d = result["dry_run"]
        print(f"dry run: {d['jobs']} job(s), {d['parameter_rows']} parameter rows, {d['shots_per_row']} shots per "
              f"row, estimated QPU time ~{d['estimated_qpu_seconds']} s; sent: head angles only"
              + (f"; planned on {d['planned_on']}" if d.get("planned_on") else ""))
        return
    if not result["rows"]:
        raise QmedimgError(f"nothing could be predicted ({len(result['errors'])} unreadable file(s))")
    if not folder and len(result["rows"]) <= 20:
        for r in result["rows"]:
            probs = "  ".join(f"{n}: {p:.3f}" for n, p in r["probabilities"].items())
            evs = " ".join(f"{v:+.3f}" for v in r["expectations"])
            print(f"{r['file']}: {r['class']}   ({probs})" + (f"   head ⟨O⟩ = [{evs}]" if evs else ""))
    if "prediction" in result:
        print(_prediction_line(result["prediction"]))
    print(f"{len(result['rows'])} predicted, {len(result['errors'])} skipped"
          + (f"; written to {result['path']}" if result["path"] else ""))


def _prediction_line(prediction: dict, compared: dict | None = None) -> str:
    """One line on an ibm run's measured values against their prediction on the calibration snapshot."""
    agreement, snapshot = prediction["agreement"], prediction["snapshot"]
    acc = (f"predicted ACC {compared['predicted']['acc']:.4f}, measured {compared['measured']['acc']:.4f}; "
           if compared else "")
    return (f"predicted on the calibration snapshot {snapshot['file']} (calibrated {snapshot['calibration_date']}): "
            f"{acc}measured vs predicted values: {agreement['verdict']} (chi2 {agreement['chi2']:.1f} on "
            f"{agreement['dof']}, p = {agreement['p']:.3g})")


def cmd_explain(args: argparse.Namespace) -> None:
    from qmedimg.workflows.export import beside, opened_run
    from qmedimg.workflows.predict import explain

    out = args.out or str(beside(args.run_dir, "explain"))
    with opened_run(args.run_dir) as run_dir:
        written = explain(run_dir, args.images, out, device=args.device)
    for path in written:
        print(f"written {path}")


def cmd_export(args: argparse.Namespace) -> None:
    from qmedimg.workflows.export import export_run

    file = export_run(args.run_dir, args.file)
    print(f"written {file} ({file.stat().st_size / 1e6:.1f} MB); predict and explain take it in place of RUN_DIR: "
          f"qmedimg predict {file} IMAGE")


def cmd_report(args: argparse.Namespace) -> None:
    from qmedimg.workflows.qpu_report import qpu_report

    md, png = qpu_report(args.run_dir)
    print(f"written {md} and {png}")


def cmd_circuits(args: argparse.Namespace) -> None:
    from qmedimg.quantum.circuits import circuit_table, draw_circuit, load_circuit

    if args.action == "show":
        if not args.name:
            raise QmedimgError("circuits show needs a NAME or PATH (see `qmedimg circuits`)")
        spec = load_circuit(args.name, qubits=args.qubits, layers=args.layers)
        print(f"{spec.name}: {spec.description}")
        print(f"{spec.num_qubits} qubits, {len(spec.inputs)} inputs, {len(spec.weights)} weights, "
              f"depth {spec.depth}, file {spec.path}")
        print(draw_circuit(spec))
        return
    rows = circuit_table()
    print(f"{'name':<8}{'qubits':>7}{'layers':>7}{'inputs':>7}{'weights':>8}{'depth':>6}  description")
    for r in rows:
        print(f"{r['name']:<8}{r['qubits']:>7}{r['layers'] or '-':>7}{r['inputs']:>7}"
              f"{r['weights']:>8}{r['depth']:>6}  {r['description']}")
    print("draw one: qmedimg circuits show NAME [--qubits N --layers L]; add your own: circuits/README.md")


def interrupted(args: argparse.Namespace) -> str:
    """What an interrupted command left behind, and how to go on: said from what is on disk."""
    if args.command == "train":
        from qmedimg.model import saved_epoch

        path = args.resume or args.out
        if not path or not (Path(path) / "config.json").is_file():
            return "nothing was written"
        epoch = saved_epoch(path)
        if epoch is None:
            return (f"no epoch had finished, so no checkpoint was saved; `qmedimg train --resume {path}` starts "
                    "the run again at epoch 1")
        return f"epoch {epoch} is saved in {path}/checkpoint.pt; continue with `qmedimg train --resume {path}`"
    hints = {"evaluate": "submitted job ids are in the run's ledger — re-run the same command to collect them",
             "noise-study": "finished grid points are in results.csv — re-run the same command to continue",
             "width-study": "finished runs and grid points are kept — re-run the same command to continue",
             "compare": "finished runs are kept — re-run the same command to continue"}
    return hints.get(args.command, "nothing was written half-way")
