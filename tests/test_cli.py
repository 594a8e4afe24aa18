"""The command line, in-process with Typer's runner, against fake engines."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mmstudio.cli import app
from tests.domain.conftest import local_env
from tests.fakes.base import Reply, closed_port
from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_server import FakeOpenAIServer


@pytest.fixture
def ollama() -> Iterator[FakeOllamaServer]:
    with FakeOllamaServer() as server:
        yield server


@pytest.fixture
def env(data_dir: Path, ollama: FakeOllamaServer) -> dict[str, str]:
    return {
        "MMSTUDIO_DATA_DIR": str(data_dir),
        **local_env(ollama, None),
        "OPENAI_API_KEY": "",
        "ANTHROPIC_API_KEY": "",
        "GEMINI_API_KEY": "",
        "GOOGLE_API_KEY": "",
        "XAI_API_KEY": "",
        "MMSTUDIO_CONFIG": "",
        "COLUMNS": "200",
    }


runner = CliRunner()


def test_models_list_shows_local_models_with_health(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["models", "list"], env=env)
    assert result.exit_code == 0, result.output
    assert "ollama/llama3.2:latest" in result.output and "ms" in result.output
    assert "OpenAI: " in result.output and "set OPENAI_API_KEY" in result.output


def test_models_list_json(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["models", "list", "--json"], env=env)
    models = {m["id"]: m for m in json.loads(result.output)}
    assert models["ollama/llama3.2:latest"]["health"]["status"] == "healthy"
    assert not models["openai/gpt-4o"]["available"]


def test_models_detect_and_health(env: dict[str, str]) -> None:
    detect = runner.invoke(app, ["models", "detect"], env=env)
    assert (
        "ollama: 2 model(s)" in detect.output and "lmstudio:" in detect.output and "refused" in detect.output
    )
    health = runner.invoke(app, ["models", "health"], env=env)
    assert health.exit_code == 0 and "version 0.12.3" in health.output


def test_models_add_then_chat_by_name(env: dict[str, str]) -> None:
    with FakeOpenAIServer(flavor="lmstudio", models=["gemma-2-2b-it"]) as lm:
        env = {**env, "LMSTUDIO_BASE_URL": f"{lm.url}/v1"}
        added = runner.invoke(
            app,
            [
                "models",
                "add",
                "--platform",
                "lmstudio",
                "--url",
                f"{lm.url}/v1",
                "--model",
                "gemma-2-2b-it",
                "--name",
                "My Gemma 2B",
            ],
            env=env,
        )
        assert added.exit_code == 0, added.output
        assert "registered 'My Gemma 2B' as lmstudio/gemma-2-2b-it" in added.output
        lm.script(Reply(text="Streaming works fine."))
        chat = runner.invoke(app, ["chat", "My Gemma 2B", "Say something"], env=env)
        assert chat.exit_code == 0, chat.output
        assert "Streaming works fine." in chat.output
        streamed = [r for r in lm.requests_to("/v1/chat/completions") if r.json().get("stream")]
        assert streamed and streamed[0].json()["messages"][-1]["content"] == "Say something"
        listed = runner.invoke(app, ["models", "list"], env=env)
        assert "My Gemma 2B" in listed.output


def test_models_add_failure_is_a_message_not_a_traceback(env: dict[str, str]) -> None:
    result = runner.invoke(
        app,
        [
            "models",
            "add",
            "--platform",
            "ollama",
            "--url",
            f"http://127.0.0.1:{closed_port()}",
            "--model",
            "x",
        ],
        env=env,
    )
    assert result.exit_code == 1
    assert "connection refused" in result.output and "Traceback" not in result.output
    bad = runner.invoke(app, ["models", "add", "--platform", "vllm", "--model", "x"], env=env)
    assert bad.exit_code == 2 and "ollama, lmstudio, openai_compat" in bad.output


def test_interactive_chat_keeps_history(env: dict[str, str], ollama: FakeOllamaServer) -> None:
    # after the first exchange the model also writes the conversation's title
    ollama.script(Reply(text="First answer."), Reply(text="Greetings"), Reply(text="Second answer."))
    result = runner.invoke(app, ["chat", "ollama/llama3.2"], input="hello\nand again\n/exit\n", env=env)
    assert result.exit_code == 0, result.output
    assert "First answer." in result.output and "Second answer." in result.output
    second = ollama.requests_to("/api/chat")[-1].json()["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"] == "First answer."
    conversation_id = result.output.rsplit("mmstudio chat -c ", 1)[1].split(")")[0].strip()

    # the conversation is kept: resume it, list it, show it, export it
    ollama.script(Reply(text="Third answer."))
    resumed = runner.invoke(app, ["chat", "-", "one more", "-c", conversation_id], env=env)
    assert resumed.exit_code == 0, resumed.output
    assert "Resuming “Greetings”" in resumed.output and "Third answer." in resumed.output
    third = ollama.requests_to("/api/chat")[-1].json()["messages"]
    assert [m["content"] for m in third] == [
        "hello",
        "First answer.",
        "and again",
        "Second answer.",
        "one more",
    ]

    listed = runner.invoke(app, ["conversations", "list"], env=env)
    assert conversation_id in listed.output and "Greetings" in listed.output
    found = runner.invoke(app, ["conversations", "list", "--search", "nothing-like-this"], env=env)
    assert conversation_id not in found.output
    shown = runner.invoke(app, ["conversations", "show", conversation_id], env=env)
    assert shown.output.index("hello") < shown.output.index("Second answer.") < shown.output.index("one more")
    exported = runner.invoke(
        app, ["conversations", "export", conversation_id, "--format", "markdown"], env=env
    )
    assert exported.exit_code == 0 and exported.output.startswith("# Greetings")
    as_json = runner.invoke(app, ["conversations", "export", conversation_id], env=env)
    assert len(json.loads(as_json.output)["messages"]) == 6
    missing = runner.invoke(app, ["conversations", "show", "nope"], env=env)
    assert missing.exit_code == 1 and "nope" in missing.output and "Traceback" not in missing.output


def test_chat_unknown_model_lists_available(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["chat", "nope/model", "hi"], env=env)
    assert result.exit_code == 1
    assert "Unknown model 'nope/model'" in result.output and "ollama/llama3.2:latest" in result.output


def test_bad_config_file_is_named(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("timeouts: {local: -5}\n")
    result = runner.invoke(app, ["models", "list", "--config", str(bad)], env=env)
    assert result.exit_code == 1 and "bad.yaml: timeouts.local" in result.output


# -- codegen ---------------------------------------------------------------------------------------

APP_FILES = (
    "File: app/main.py\n```python\nprint('hello')\n```\n"
    "File: README.md\n````markdown\n# Hello\n\n```bash\npython app/main.py\n```\n````\n"
)


def _codegen(env: dict[str, str], out: Path, *extra: str) -> Any:
    return runner.invoke(
        app,
        [
            "codegen",
            "A hello script",
            "--framework",
            "python-cli",
            "--target",
            "script",
            "--out",
            str(out),
            *extra,
        ],
        env=env,
    )


def test_codegen_writes_the_files_into_out_with_progress(
    env: dict[str, str], ollama: FakeOllamaServer, tmp_path: Path
) -> None:
    out = tmp_path / "hello"
    ollama.script(Reply(text=APP_FILES))
    result = _codegen(env, out)
    assert result.exit_code == 0, result.output
    assert (out / "app" / "main.py").read_text() == "print('hello')\n"
    assert (out / "README.md").read_text() == "# Hello\n\n```bash\npython app/main.py\n```\n"
    assert re.search(r"Generated with gemma3:4b in \d+ ms: 2 file\(s\)", result.output)
    assert "+ app/main.py" in result.output and "Trying" not in result.output  # the spinner is transient
    assert not os.access(out / "app" / "main.py", os.X_OK)
    prompt = ollama.requests_to("/api/chat")[0].json()["messages"][1]["content"]
    assert "Python CLI" in prompt and "A hello script" in prompt


def test_codegen_refuses_to_overwrite_without_force(
    env: dict[str, str], ollama: FakeOllamaServer, tmp_path: Path
) -> None:
    out = tmp_path / "hello"
    (out / "app").mkdir(parents=True)
    (out / "app" / "main.py").write_text("mine\n")
    ollama.script(Reply(text=APP_FILES), Reply(text=APP_FILES))
    refused = _codegen(env, out)
    assert refused.exit_code == 1
    assert "app/main.py" in refused.output and "--force" in refused.output
    assert (out / "app" / "main.py").read_text() == "mine\n"
    assert not (out / "README.md").exists()  # all or nothing
    # The generated files are kept: the refusal says how to write them without another model call.
    project = re.search(r"kept as project (\S+):", refused.output)
    assert project is not None, refused.output
    calls = len(ollama.requests_to("/api/chat"))
    written = runner.invoke(app, ["codegen", "--project", project[1], "--out", str(out), "--force"], env=env)
    assert written.exit_code == 0, written.output
    assert (out / "app" / "main.py").read_text() == "print('hello')\n"
    assert (out / "README.md").exists() and len(ollama.requests_to("/api/chat")) == calls
    forced = _codegen(env, out, "--force")
    assert forced.exit_code == 0, forced.output
    assert (out / "app" / "main.py").read_text() == "print('hello')\n"


def test_codegen_never_writes_outside_out(
    env: dict[str, str], ollama: FakeOllamaServer, tmp_path: Path
) -> None:
    out = tmp_path / "project"
    outside = tmp_path / "outside"
    outside.mkdir()
    escape = (
        "File: ../escaped.py\n```python\nx = 1\n```\n"
        "File: /tmp/absolute.py\n```python\nx = 2\n```\n"
        "File: ok.py\n```python\nx = 3\n```\n"
    )
    ollama.script(Reply(text=escape))
    result = _codegen(env, out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "outside", "project"]
    assert [p.name for p in out.iterdir()] == ["ok.py"]
    assert "left out" in result.output and "../escaped.py" in result.output
    # A symbolic link inside --out that points elsewhere is refused: nothing is written at all.
    (out / "src").symlink_to(outside, target_is_directory=True)
    ollama.script(Reply(text="File: src/evil.py\n```python\nx = 4\n```\nFile: b.py\n```python\nx = 5\n```\n"))
    refused = _codegen(env, out, "--force")
    assert refused.exit_code == 1 and "symbolic link" in refused.output
    assert list(outside.iterdir()) == [] and not (out / "b.py").exists()


def test_codegen_bad_choices_and_no_model(env: dict[str, str], tmp_path: Path) -> None:
    bad = runner.invoke(
        app,
        ["codegen", "x", "--framework", "angular", "--target", "script", "--out", str(tmp_path / "o")],
        env=env,
    )
    assert bad.exit_code == 2
    assert (
        "unknown framework 'angular'; allowed: react, vue, svelte, fastapi, flask, node, python-cli"
        in bad.output
    )
    bad_target = runner.invoke(
        app,
        ["codegen", "x", "--framework", "react", "--target", "widget", "--out", str(tmp_path / "o")],
        env=env,
    )
    assert (
        bad_target.exit_code == 2 and "--target" in bad_target.output and "full-project" in bad_target.output
    )
    missing = runner.invoke(app, ["codegen", "x", "--out", str(tmp_path / "o")], env=env)
    assert missing.exit_code == 2 and "missing --framework, --target" in missing.output
    unknown = runner.invoke(app, ["codegen", "--project", "nope", "--out", str(tmp_path / "o")], env=env)
    assert unknown.exit_code == 1 and "no Creator Studio project with id 'nope'" in unknown.output
    nothing = {**env, **local_env(None, None)}
    result = _codegen(nothing, tmp_path / "o")
    assert result.exit_code == 1 and "Register a model first" in result.output
    assert not (tmp_path / "o").exists()


# -- images ----------------------------------------------------------------------------------------


def test_image_writes_files_says_who_made_them_and_lists_the_gallery(
    env: dict[str, str], tmp_path: Path
) -> None:
    from tests.fakes.a1111_server import A1111Reply, FakeA1111Server
    from tests.fakes.images import make_image

    ref = tmp_path / "photo.png"
    ref.write_bytes(make_image(64, 64))
    with FakeA1111Server(models=["sdxl.safetensors"]) as a1111:
        a1111.script(A1111Reply(seed=77))
        image_env = {**env, "A1111_URL": a1111.url}
        out = tmp_path / "out"
        result = runner.invoke(
            app,
            [
                "image",
                "a lighthouse at dusk",
                "-n",
                "2",
                "--size",
                "512x512",
                "--ref",
                str(ref),
                "-o",
                str(out),
            ],
            env=image_env,
        )
        assert result.exit_code == 0, result.output
        written = sorted(out.glob("*.png"))
        assert len(written) == 2 and all(str(p) in result.output for p in written)
        assert re.search(r"Made with sdxl\.safetensors.* in \d+\.\d s: 2 image\(s\)", result.output), (
            result.output
        )
        (sent,) = [r.json() for r in a1111.requests if r.path.endswith("img2img")]
        assert sent["init_images"] and (sent["width"], sent["height"]) == (512, 512)

        listed = runner.invoke(app, ["images", "list"], env=image_env)
        assert listed.exit_code == 0, listed.output
        assert (
            "a lighthouse at dusk" in listed.output
            and "2 of 2 image(s)" in listed.output
            and "77" in listed.output
        )

        bad = runner.invoke(app, ["image", "x", "--ref", str(tmp_path / "missing.png")], env=image_env)
        assert bad.exit_code != 0 and "missing.png" in bad.output and "Traceback" not in bad.output
        unknown = runner.invoke(app, ["image", "x", "-m", "no-such-model", "-o", str(out)], env=image_env)
        assert unknown.exit_code != 0 and "Image models available now" in unknown.output
        not_image = tmp_path / "notes.txt"
        not_image.write_text("hello")
        refused = runner.invoke(app, ["image", "x", "--ref", str(not_image), "-o", str(out)], env=image_env)
        assert refused.exit_code != 0 and "not an image" in refused.output


def test_image_without_any_image_model_points_to_onboarding(env: dict[str, str], tmp_path: Path) -> None:
    result = runner.invoke(app, ["image", "a lighthouse", "-o", str(tmp_path)], env=env)
    assert result.exit_code != 0 and "Add an image model" in result.output


# -- videos and jobs -------------------------------------------------------------------------------


def test_video_follows_the_job_writes_the_file_and_jobs_lists_it(env: dict[str, str], tmp_path: Path) -> None:
    from tests.fakes.openai_videos_server import FakeOpenAIVideosServer, video_bytes

    config = tmp_path / "mmstudio.yaml"
    config.write_text("videos: {poll_interval_s: 0.01}\n")
    with FakeOpenAIVideosServer(api_key="sk-cli-video") as sora:
        video_env = {
            **env,
            "MMSTUDIO_CONFIG": str(config),
            "OPENAI_API_KEY": "sk-cli-video",
            "OPENAI_BASE_URL": f"{sora.url}/v1",
        }
        out = tmp_path / "fox.mp4"
        result = runner.invoke(
            app, ["video", "a fox in the snow", "-m", "sora-2", "-o", str(out)], env=video_env
        )
        assert result.exit_code == 0, result.output
        assert out.read_bytes() == video_bytes("720x1280", "4") and str(out) in result.output
        assert "Made with openai/sora-2" in result.output and sora.submissions == 1
        listed = runner.invoke(app, ["jobs", "list"], env=video_env)
        assert listed.exit_code == 0 and "complete" in listed.output and "1 of 1 job(s)" in listed.output
        job_id = re.search(r"job_[\w-]+", listed.output)
        assert job_id is not None
        cancel = runner.invoke(app, ["jobs", "cancel", job_id.group(0)], env=video_env)
        assert cancel.exit_code == 0 and "complete" in cancel.output  # a finished job stays as it ended
        bad = runner.invoke(app, ["video", "x", "-m", "no-such-model"], env=video_env)
        assert bad.exit_code != 0 and "Unknown video model" in bad.output
        missing = runner.invoke(app, ["jobs", "watch", "job_nope"], env=video_env)
        assert missing.exit_code != 0 and "no job 'job_nope'" in missing.output


def test_studio_video_new_generate_and_export_a_film(env: dict[str, str], tmp_path: Path) -> None:
    import av

    from tests.fakes.images import make_image
    from tests.fakes.openai_videos_server import FakeOpenAIVideosServer

    config = tmp_path / "mmstudio.yaml"
    config.write_text("videos: {poll_interval_s: 0.01}\n")
    with FakeOpenAIVideosServer(api_key="sk-cli-studio") as sora:
        video_env = {
            **env,
            "MMSTUDIO_CONFIG": str(config),
            "OPENAI_API_KEY": "sk-cli-studio",
            "OPENAI_BASE_URL": f"{sora.url}/v1",
        }
        made = runner.invoke(app, ["studio", "video", "new", "trip", "--resolution", "480p"], env=video_env)
        assert made.exit_code == 0 and "trip" in made.output and "none usable" in made.output, made.output
        still = tmp_path / "still.png"
        still.write_bytes(make_image(64, 36))
        shot = runner.invoke(
            app,
            [
                *("studio", "video", "generate", "trip", "a fox", "-m", "openai/sora-2"),
                *("--camera-pan-x", "-0.5", "--amplitude", "0.5", "--loop", "--negative", "blurry"),
                *("--start-frame", str(still)),
            ],
            env=video_env,
        )
        assert shot.exit_code == 0 and "Made with openai/sora-2" in shot.output, shot.output
        assert "camera via prompt" in shot.output and "negative prompt not used by this model" in shot.output
        assert not list(Path.cwd().glob("*.mp4"))  # without -o the clip stays on the timeline only
        assert sora.creates[-1].values["prompt"] == (  # what went upstream: Sora has no such parameters
            "a fox. Camera: slow pan left. Style: lively motion. "
            "A seamless loop: the last frame matches the first."
        )
        assert sora.creates[-1].reference is not None  # the start frame, uploaded from the file
        listed = runner.invoke(app, ["studio", "video", "list"], env=video_env)
        assert listed.exit_code == 0 and "openai/sora-2" in listed.output and "trip" in listed.output
        film = tmp_path / "film.mp4"
        exported = runner.invoke(
            app, ["studio", "video", "export", "trip", "-o", str(film), "--fps", "4"], env=video_env
        )
        assert exported.exit_code == 0 and "Made with mmstudio/export" in exported.output, exported.output
        with av.open(str(film)) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.width, stream.codec_context.height) == (854, 480)
        wild = runner.invoke(
            app, ["studio", "video", "generate", "trip", "x", "--camera-zoom", "2"], env=video_env
        )
        assert wild.exit_code != 0 and "camera-zoom" in wild.output
        missing = runner.invoke(app, ["studio", "video", "export", "nope", "-o", str(film)], env=video_env)
        assert (
            missing.exit_code != 0
            and "no video project 'nope'" in missing.output
            and "Traceback" not in missing.output
        )
