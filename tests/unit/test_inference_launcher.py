"""`python -m inference.triton` preparation steps, without starting a server."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from inference import triton


def test_wheel_has_the_server_stub_and_libs() -> None:
    wheel = triton.find_wheel()
    assert wheel.server.name == "tritonserver" and wheel.server.is_file()
    assert (wheel.python_backend / "libtriton_python.so").is_file()
    assert wheel.stub.parent.name == "3.11"


def test_python_libdir_holds_the_shared_libpython() -> None:
    assert list(triton.python_libdir().glob("libpython3.11.so*"))


def test_backends_dir_layout(tmp_path: Path) -> None:
    backends = triton.prepare_backends(triton.find_wheel(), tmp_path)
    names = sorted(p.name for p in (backends / "python").iterdir())
    assert names == ["libtriton_python.so", "triton_python_backend_stub", "triton_python_backend_utils.py"]


def test_cpu_uses_the_repository_in_place(tmp_path: Path) -> None:
    assert triton.prepare_repository(triton.REPO_MODELS, tmp_path, "cpu") == triton.REPO_MODELS


def test_gpu_gets_a_copy_with_gpu_instances(tmp_path: Path) -> None:
    repo = triton.prepare_repository(triton.REPO_MODELS, tmp_path, "gpu")
    config = (repo / "embedder" / "config.pbtxt").read_text()
    assert repo.is_relative_to(tmp_path)
    assert "kind: KIND_GPU" in config and "KIND_CPU" not in config
    assert (repo / "embedder" / "1" / "model.py").is_file()
    assert "KIND_CPU" in (triton.REPO_MODELS / "embedder" / "config.pbtxt").read_text()  # original untouched


def test_repository_config_declares_the_contract() -> None:
    config = (triton.REPO_MODELS / "embedder" / "config.pbtxt").read_text()
    for needle in (
        'name: "TEXT"',
        "TYPE_STRING",
        '"EMBEDDING"',
        "dims: [ 384 ]",
        '"TOKENS"',
        "TYPE_INT32",
        "max_batch_size: 64",
        "dynamic_batching",
        'backend: "python"',
    ):
        assert needle in config


def test_unmapped_shm_regions_are_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(triton, "SHM_DIR", tmp_path)
    (tmp_path / "unrelated").touch()
    region = tmp_path / f"{triton.SHM_PREFIX}1234"
    region.touch()
    assert triton.stale_shm_regions() == [region]
    triton.clean_shm()
    assert not region.exists() and (tmp_path / "unrelated").exists()


def test_server_command_binds_loopback_and_loads_one_model(tmp_path: Path) -> None:
    args = triton.build_parser().parse_args(["--http-port", "1", "--grpc-port", "2", "--metrics-port", "3"])
    cmd = triton.server_command(args, triton.find_wheel(), tmp_path / "backends", tmp_path / "repo")
    for flag in (
        "--model-control-mode=explicit",
        "--load-model=embedder",
        "--grpc-port=2",
        "--grpc-address=127.0.0.1",
        "--http-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
        "--disable-auto-complete-config",
        "--pinned-memory-pool-byte-size=0",
    ):
        assert flag in cmd


def test_server_env_puts_this_python_first(tmp_path: Path) -> None:
    env = triton.server_env(triton.find_wheel(), tmp_path)
    assert env["LD_LIBRARY_PATH"].split(":")[:2] == [str(triton.find_wheel().libs), str(tmp_path)]
    assert env["HF_HUB_OFFLINE"] == "1"


def test_device_flag_is_checked() -> None:
    assert triton.device_choice("gpu") == "gpu"
    with pytest.raises(argparse.ArgumentTypeError):
        triton.device_choice("tpu")


def test_missing_model_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = triton.main(
        ["--model-repository", str(tmp_path), "--work-dir", str(tmp_path / "w"), "--device", "cpu"]
    )
    assert code == 2
    assert "error: no embedder/config.pbtxt" in capsys.readouterr().err


def test_missing_libpython_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = triton.sysconfig.get_config_var
    monkeypatch.setattr(
        triton.sysconfig, "get_config_var", lambda k: str(tmp_path) if k == "LIBDIR" else real(k)
    )
    with pytest.raises(
        triton.LaunchError, match=r"libpython3\.11\.so\.1\.0 not found .* apt install libpython3\.11"
    ):
        triton.python_libdir()


def test_numpy_2_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(triton.importlib.metadata, "version", lambda name: "2.1.0")
    with pytest.raises(triton.LaunchError, match="numpy<2"):
        triton.check_numpy()


def test_device_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(triton, "gpu_present", lambda: True)
    monkeypatch.setattr(triton, "torch_has_cuda", lambda: False)
    assert triton.resolve_device("auto") == "cpu"  # a GPU without CUDA torch is no use
    with pytest.raises(triton.LaunchError, match="CPU-only"):
        triton.resolve_device("gpu")
    monkeypatch.setattr(triton, "torch_has_cuda", lambda: True)
    assert triton.resolve_device("auto") == "gpu"
    assert triton.resolve_device("cpu") == "cpu"
    monkeypatch.setattr(triton, "gpu_present", lambda: False)
    assert triton.resolve_device("auto") == "cpu"
