"""Where the network runs: ``--device auto|cpu|cuda`` on every command that runs one. Here (no GPU)
``auto`` is the CPU, ``cuda`` is refused in one line before anything is written, runs record their
device, and a checkpoint written on a GPU loads and resumes on the CPU. The GPU tests skip without one."""

import io
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.serialization
from PIL import Image

from qmedimg.cli import main
from qmedimg.errors import QmedimgError
from qmedimg.model import model_device, torch_device
from qmedimg.rundir import load_run, make_config
from qmedimg.workflows.evaluate import evaluate_run
from qmedimg.workflows.train import resume, train
from support import one_line_error, snapshot

HAS_GPU = torch.cuda.is_available()
no_gpu_only = pytest.mark.skipif(HAS_GPU, reason="refusing CUDA needs a machine without a GPU")
gpu_only = pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU here")
TINY_ARGV = ["--dataset", "synthetic", "--limit", "48", "--epochs", "1", "--batch-size", "16", "--quiet"]


# ----------------------------------------------------------------------------------------- resolving


def test_auto_is_the_cpu_without_a_gpu_and_cuda_with_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert torch_device("auto") == torch_device() == torch.device("cpu")
    assert torch_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cuda, "cublas_workspace_size", lambda size: size, raising=False)
    assert torch_device("auto") == torch.device("cuda")


def test_choosing_cuda_sets_the_cublas_workspace_through_torch_not_the_environment(monkeypatch):
    """CUDA runs keep the 32 MiB cuBLAS workspace of CUBLAS_WORKSPACE_CONFIG=:4096:8 they always had: through
    torch's own setting where torch has one; only an older torch (it reads the variable alone, and its
    deterministic mode refuses cuBLAS without it) gets the variable. A user's own value is kept."""
    sizes = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cuda, "cublas_workspace_size", sizes.append, raising=False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert torch_device("auto") == torch.device("cuda")
    assert sizes == [4096 * 1024 * 8] and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    torch_device("cuda")
    assert sizes == [4096 * 1024 * 8] and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    monkeypatch.delattr(torch.backends.cuda, "cublas_workspace_size")  # an older torch
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    torch_device("cuda")
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_choosing_the_cpu_leaves_the_cublas_setting_alone(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch_device("cpu")
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


@no_gpu_only
@pytest.mark.parametrize("name", ["cuda", "CUDA", "cuda:0"])
def test_cuda_without_a_gpu_is_one_line_naming_the_fix(name):
    with pytest.raises(QmedimgError) as exc:
        torch_device(name)
    assert str(exc.value) == (f"--device {name}: torch sees no CUDA GPU here (torch.cuda.is_available() is False); "
                              "use --device cpu or auto")


@pytest.mark.parametrize("name", ["gpu", "mps", "cuda:x", ""])
def test_an_unknown_device_is_refused_by_the_api_and_by_argparse(name, capsys):
    with pytest.raises(QmedimgError, match="valid: auto, cpu, cuda"):
        torch_device(name)
    if name:
        with pytest.raises(SystemExit) as exc:
            main(["evaluate", "RUN", "--device", name])
        assert exc.value.code == 2 and "invalid choice" in one_line_error(capsys)


# ------------------------------------------------------------------------------- refused, nothing written


@no_gpu_only
def test_train_on_cuda_without_a_gpu_is_refused_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY_ARGV, "--out", str(out), "--device", "cuda"]) == 2
    assert "torch sees no CUDA GPU here" in one_line_error(capsys)
    assert not out.exists()


@no_gpu_only
@pytest.mark.parametrize("command", ["resume", "evaluate", "predict", "explain"])
def test_commands_on_a_run_refuse_cuda_without_a_gpu_before_writing(tiny_run_copy, tmp_path, capsys, command,
                                                                     monkeypatch):
    png = tmp_path / "images" / "case.png"
    png.parent.mkdir()
    Image.fromarray(load_run(tiny_run_copy).dataset.test.images[0, 0]).save(png)
    monkeypatch.chdir(tmp_path)
    argv = {"resume": ["train", "--resume", str(tiny_run_copy), "--quiet"],
            "evaluate": ["evaluate", str(tiny_run_copy), "--backend", "fake_manila", "--test-limit", "4", "--quiet"],
            "predict": ["predict", str(tiny_run_copy), str(png.parent), "--quiet"],
            "explain": ["explain", str(tiny_run_copy), str(png)]}[command]
    before, here = snapshot(tiny_run_copy), snapshot(tmp_path)
    assert main([*argv, "--device", "cuda"]) == 2
    assert "--device cuda: torch sees no CUDA GPU here" in one_line_error(capsys)
    assert snapshot(tiny_run_copy) == before and snapshot(tmp_path) == here  # no eval file, CSV, explain/


@no_gpu_only
@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_amp_without_cuda_is_refused_and_writes_nothing(tmp_path, capsys, device):
    out = tmp_path / "run"
    assert main(["train", *TINY_ARGV, "--out", str(out), "--amp", "--device", device]) == 2
    err = one_line_error(capsys)
    assert "--amp needs --device cuda" in err and "the device here is cpu" in err
    assert not out.exists()


@no_gpu_only
def test_resuming_an_amp_run_without_cuda_is_refused_and_changes_nothing(tiny_run_copy, capsys):
    record = json.loads((tiny_run_copy / "config.json").read_text())
    record["config"]["amp"] = True  # as a run trained with --amp on a GPU records it
    (tiny_run_copy / "config.json").write_text(json.dumps(record))
    before = snapshot(tiny_run_copy)
    assert main(["train", "--resume", str(tiny_run_copy), "--quiet"]) == 2
    assert f"{tiny_run_copy} was trained with --amp: resume it on a GPU" in one_line_error(capsys)
    assert snapshot(tiny_run_copy) == before


def test_amp_is_offered_where_a_network_trains_only():
    from qmedimg.cli.parser import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    with_device = {name for name, sub in commands.items() if any("--device" in a.option_strings for a in sub._actions)}
    with_amp = {name for name, sub in commands.items() if any("--amp" in a.option_strings for a in sub._actions)}
    assert with_device == {"train", "evaluate", "predict", "explain", "compare", "noise-study", "width-study"}
    assert with_amp == {"train", "compare"}
    args = build_parser().parse_args(["train", "--out", "x"])
    assert (args.device, args.amp) == ("auto", False)


def test_training_with_amp_evaluates_in_float32(tmp_path, monkeypatch):
    """--amp runs the trained copy's backbone under float16 autocast; every evaluation (validation each epoch,
    the final metrics) runs in float32. Here on the CPU, where torch's CPU autocast stands in for CUDA's."""
    import qmedimg.model as model_module
    import qmedimg.workflows.train as train_module
    from qmedimg.backbones import autocast

    monkeypatch.setattr(train_module, "training_device", lambda *args, **kwargs: torch.device("cpu"))  # --amp allowed
    phase, autocast_in = ["training"], []

    def recorded_autocast(network, images):
        autocast_in.append(phase[0])
        out = autocast(network, images)
        assert torch.is_autocast_enabled("cpu") is False and out.dtype == torch.float32  # float16 inside only
        return out

    def evaluating(predict):
        def run(model, images, *args, **kwargs):
            phase[0] = "evaluation"
            try:
                return predict(model, images, *args, **kwargs)
            finally:
                phase[0] = "training"
        return run

    monkeypatch.setattr(model_module, "autocast", recorded_autocast)
    monkeypatch.setattr(train_module, "predict_probs", evaluating(train_module.predict_probs))
    config = make_config(dataset="synthetic", limit=48, epochs=2, batch_size=16, amp=True, out=str(tmp_path / "run"))
    with pytest.warns(UserWarning, match="GradScaler is enabled, but CUDA is not available"):  # no loss scaling here
        metrics = train(config, progress=False)
    assert "training" in autocast_in and "evaluation" not in autocast_in
    assert 0 <= metrics["test"]["acc"] <= 1


# ------------------------------------------------------------------------------------------ recorded


def test_runs_and_evaluations_record_the_device_outside_the_config(tiny_run_copy):
    record = json.loads((tiny_run_copy / "config.json").read_text())
    metrics = json.loads((tiny_run_copy / "metrics.json").read_text())
    assert record["device"] == metrics["device"] == str(torch_device("auto"))
    assert "device" not in record["config"]  # where a run ran does not define it: compare's reuse check ignores it
    result = evaluate_run(tiny_run_copy, device="cpu")
    assert result["torch_device"] == "cpu"  # "device" in an eval file is the quantum backend's
    assert json.loads(Path(result["path"]).read_text())["torch_device"] == "cpu"


def test_load_run_puts_the_network_on_the_device_asked(tiny_run):
    run = load_run(tiny_run, device="cpu")
    assert model_device(run.model) == torch.device("cpu")
    assert run.model.head.connector.weight.device == torch.device("cpu")


# ----------------------------------------------------------------------------- a checkpoint from a GPU


def as_if_written_on_a_gpu(checkpoint: Path) -> None:
    """Re-save ``checkpoint`` with every tensor tagged ``cuda:0``, as torch.save writes on a GPU machine."""
    state = torch.load(checkpoint, weights_only=True)
    real = torch.serialization.location_tag
    torch.serialization.location_tag = lambda storage: "cuda:0"
    try:
        buffer = io.BytesIO()
        torch.save(state, buffer)
    finally:
        torch.serialization.location_tag = real
    checkpoint.write_bytes(buffer.getvalue())


@no_gpu_only
def test_a_checkpoint_written_on_a_gpu_loads_evaluates_and_resumes_on_the_cpu(tmp_path, tiny_run):
    whole = json.loads((tiny_run / "metrics.json").read_text())  # conftest's TINY: 2 epochs
    config = make_config(dataset="synthetic", limit=48, epochs=2, batch_size=16, out=str(tmp_path / "cut"))

    def stop(epoch, row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False, on_epoch=stop)
    as_if_written_on_a_gpu(tmp_path / "cut" / "checkpoint.pt")
    with pytest.raises(RuntimeError, match="CUDA"):  # what torch does without map_location
        torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    resumed = resume(tmp_path / "cut", progress=False, device="cpu")
    assert resumed["test"] == whole["test"] and resumed["device"] == "cpu"

    finished = Path(shutil.copytree(tiny_run, tmp_path / "finished"))
    as_if_written_on_a_gpu(finished / "checkpoint.pt")
    assert evaluate_run(finished, device="cpu")["test"] == whole["test"]


# ------------------------------------------------------------------------------------------- on a GPU


@gpu_only
def test_a_tiny_training_on_cuda_ends_close_to_the_cpus(tmp_path, trainer):
    cpu, _ = trainer(tmp_path / "cpu", epochs=2)
    config = make_config(dataset="synthetic", limit=48, epochs=2, batch_size=16, out=str(tmp_path / "cuda"))
    gpu = train(config, progress=False, device="cuda")
    assert gpu["device"].startswith("cuda") and cpu["device"] == "cpu"
    assert abs(gpu["test"]["acc"] - cpu["test"]["acc"]) <= 0.05
    assert abs(gpu["test"]["auc"] - cpu["test"]["auc"]) <= 0.05
    run = load_run(tmp_path / "cuda", device="cuda")
    weight = run.model.head.connector.weight
    assert model_device(run.model).type == "cuda" and weight.device.type == "cuda"
    angles = torch.rand(4, run.model.spec.num_qubits, device="cuda", requires_grad=True)
    out = run.model.head(angles)  # the estimator runs on the CPU; values and gradients come back to the GPU
    out.sum().backward()
    assert out.device.type == angles.grad.device.type == weight.grad.device.type == "cuda"
    assert load_run(tmp_path / "cuda", device="cpu").model.head.connector.weight.device.type == "cpu"
