"""The mail step and the run's notification mails, against a real SMTP server (aiosmtpd on
127.0.0.1, tests/executors/server_smtp.py): plain, STARTTLS, implicit TLS and AUTH."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.executors.conftest import Env
from tests.executors.server_smtp import Blackhole, cert, start_smtp  # noqa: F401  (cert: a fixture)
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "smtp-Pa55-w0rd-9271"


def _all_files(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def _no_traceback(env: Env, res: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in res.stderr + res.stdout
    for path in _all_files(env.home):
        assert b"Traceback" not in path.read_bytes(), path


def test_a_mail_step_sends_text_html_cc_bcc_and_attachments(env: Env) -> None:
    smtp = start_smtp()
    try:
        (env.dir / "report.bin").write_bytes(bytes(range(256)) * 4)
        env.write("send.yaml", f"""
            smtp: {{host: 127.0.0.1, port: {smtp.port}}}
            steps:
              - id: send
                type: mail
                with:
                  from: dagu@example.com
                  to: [ops@example.com, dev@example.com]
                  cc: lead@example.com
                  bcc: [audit@example.com]
                  subject: nightly report
                  message: "all good\\nsee attached"
                  html: "<p>all <b>good</b></p>"
                  attachments: [report.bin]
                output: SENT
              - id: after
                command: echo "id=${{send.output.message_id}} subject=${{SENT.subject}}"
                output: AFTER
            """)
        res = env.run("start", "send.yaml")
        assert res.returncode == 0, res.stderr
        [got] = smtp.sink.received
        assert got.mail_from == "dagu@example.com"
        assert sorted(got.rcpt_tos) == sorted(["ops@example.com", "dev@example.com", "lead@example.com",
                                               "audit@example.com"])
        msg = got.message
        assert msg["To"] == "ops@example.com, dev@example.com" and msg["Cc"] == "lead@example.com"
        assert msg["Bcc"] is None and b"audit@example.com" not in got.data  # envelope only
        assert msg["Subject"] == "nightly report"
        assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n").strip() == "all good\nsee attached"
        assert msg.get_body(("html",)).get_content().strip() == "<p>all <b>good</b></p>"
        [attachment] = list(msg.iter_attachments())
        assert attachment.get_filename() == "report.bin"
        assert attachment.get_content() == bytes(range(256)) * 4
        st = env.status("send")
        assert json.loads(st["steps"]["send"]["output"])["message_id"] == msg["Message-ID"]
        assert st["steps"]["after"]["output"] == f"id={msg['Message-ID']} subject=nightly report"
    finally:
        smtp.stop()


def test_starttls_with_a_login_and_the_password_never_written(env: Env, cert: tuple[Path, Path]) -> None:
    smtp = start_smtp(tls="starttls", cert=cert, login=("mailer", PASSWORD))
    try:
        env.write("tls.yaml", f"""
            secrets:
              - name: SMTP_PASS
                provider: env
                key: TEST_SMTP_PASS
            smtp:
              host: 127.0.0.1
              port: "{smtp.port}"
              username: mailer
              password: "${{SMTP_PASS}}"
              tls: starttls
              ca_file: {cert[0]}
            steps:
              - id: send
                type: mail
                with: {{from: a@example.com, to: b@example.com, subject: tls, message: hi}}
            """)
        res = env.run("start", "tls.yaml", env={"TEST_SMTP_PASS": PASSWORD})
        assert res.returncode == 0, res.stderr
        [got] = smtp.sink.received
        assert got.login == "mailer" and got.rcpt_tos == ["b@example.com"]
        assert PASSWORD not in res.stdout + res.stderr
        for path in _all_files(env.home, env.dir):
            assert PASSWORD.encode() not in path.read_bytes(), path
    finally:
        smtp.stop()


def test_implicit_tls(env: Env, cert: tuple[Path, Path]) -> None:
    smtp = start_smtp(tls="ssl", cert=cert)
    try:
        env.write("ssl.yaml", f"""
            steps:
              - id: send
                type: mail
                with: {{host: 127.0.0.1, port: {smtp.port}, tls: ssl, ca_file: "{cert[0]}",
                        from: a@example.com, to: b@example.com, subject: over tls, message: hi}}
            """)
        res = env.run("start", "ssl.yaml")
        assert res.returncode == 0, res.stderr
        assert [r.message["Subject"] for r in smtp.sink.received] == ["over tls"]
    finally:
        smtp.stop()


def test_failures_name_host_port_what_and_a_hint(env: Env, cert: tuple[Path, Path]) -> None:
    tls = start_smtp(tls="ssl", cert=cert)
    auth = start_smtp(tls="starttls", cert=cert, login=("mailer", PASSWORD))
    refused = free_port()
    try:
        common = "from: a@example.com, to: b@example.com, message: hi"
        env.write("bad.yaml", f"""
            type: graph
            env:
              - BAD_PW: not-the-password
            steps:
              - id: refused
                type: mail
                with: {{host: 127.0.0.1, port: {refused}, {common}}}
              - id: dns
                type: mail
                with: {{host: no-such-host.invalid, port: 25, {common}}}
              - id: tls
                type: mail
                with: {{host: 127.0.0.1, port: {tls.port}, tls: ssl, {common}}}
              - id: login
                type: mail
                with: {{host: 127.0.0.1, port: {auth.port}, tls: starttls, ca_file: "{cert[0]}",
                        username: mailer, password: "${{BAD_PW}}", {common}}}
            """)
        res = env.run("start", "bad.yaml")
        assert res.returncode != 0
        steps = env.status("bad")["steps"]
        errors = {k: steps[k]["attempts"][-1]["error"] if steps[k].get("attempts") else steps[k]["reason"]
                  for k in steps}
        assert all(steps[k]["status"] == "failed" for k in steps), steps
        assert f"127.0.0.1:{refused}: connection refused" in errors["refused"]
        assert "no-such-host.invalid:25: DNS lookup failed" in errors["dns"]
        assert f"127.0.0.1:{tls.port}: TLS certificate verification failed" in errors["tls"]
        assert "ca_file" in errors["tls"]
        assert f"127.0.0.1:{auth.port}: authentication as 'mailer' failed" in errors["login"]
        assert "not-the-password" not in json.dumps(steps)
        _no_traceback(env, res)
        assert tls.sink.received == [] and auth.sink.received == []
    finally:
        tls.stop()
        auth.stop()


def test_a_timeout_ends_a_mail_to_a_server_that_never_answers(env: Env) -> None:
    hole = Blackhole()
    try:
        env.write("hang.yaml", f"""
            max_clean_up_time_sec: 2
            steps:
              - id: send
                type: mail
                timeout_sec: 1
                with: {{host: 127.0.0.1, port: {hole.port}, from: a@example.com, to: b@example.com}}
            """)
        started = time.monotonic()
        res = env.run("start", "hang.yaml", timeout=30)
        assert res.returncode != 0
        assert time.monotonic() - started < 12
        step = env.status("hang")["steps"]["send"]
        assert step["status"] == "failed" and "timed out" in step["attempts"][-1]["error"]
        _no_traceback(env, res)
    finally:
        hole.close()


def test_retry_policy_retries_a_failed_mail(env: Env) -> None:
    env.write("retry.yaml", f"""
        steps:
          - id: send
            type: mail
            retry_policy: {{limit: 2, interval_sec: 0}}
            with: {{host: 127.0.0.1, port: {free_port()}, from: a@example.com, to: b@example.com}}
        """)
    res = env.run("start", "retry.yaml")
    assert res.returncode != 0
    step = env.status("retry")["steps"]["send"]
    assert step["status"] == "failed" and len(step["attempts"]) == 3
    assert all("connection refused" in a["error"] for a in step["attempts"])


def test_notifications_on_failure_and_success_and_for_a_step(env: Env) -> None:
    smtp = start_smtp()
    try:
        env.write("fails.yaml", f"""
            smtp: {{host: 127.0.0.1, port: {smtp.port}}}
            mail_on: {{failure: true, success: true}}
            error_mail: {{from: dagu@example.com, to: [oncall@example.com], prefix: "[ALERT]", attach_logs: true}}
            info_mail: {{from: dagu@example.com, to: team@example.com, prefix: "[OK]"}}
            steps:
              - id: noisy
                command: echo the-noisy-line
              - id: broken
                command: sh -c 'echo about-to-fail >&2; exit 3'
                mail_on_error: true
            """)
        res = env.run("start", "fails.yaml")
        assert res.returncode != 0
        subjects = sorted(r.message["Subject"] for r in smtp.sink.received)
        assert subjects == ["[ALERT] fails (failed)", "[ALERT] fails (step broken failed)"], subjects
        run_mail = next(r for r in smtp.sink.received if r.message["Subject"] == "[ALERT] fails (failed)")
        assert run_mail.rcpt_tos == ["oncall@example.com"]
        body = run_mail.message.get_body(("plain",)).get_content()
        assert "Status:   failed" in body and "broken: failed" in body and "noisy: succeeded" in body
        logs = {a.get_filename(): a.get_content() for a in run_mail.message.iter_attachments()}
        assert any("the-noisy-line" in str(v) for k, v in logs.items() if k.startswith("noisy.")), logs.keys()
        assert any("about-to-fail" in str(v) for k, v in logs.items() if k.startswith("broken.")), logs.keys()

        smtp.sink.received.clear()
        env.write("works.yaml", f"""
            smtp: {{host: 127.0.0.1, port: {smtp.port}}}
            mail_on: {{failure: true, success: true}}
            error_mail: {{from: dagu@example.com, to: oncall@example.com}}
            info_mail: {{from: dagu@example.com, to: team@example.com, prefix: "[OK]"}}
            steps:
              - command: "true"
            """)
        assert env.run("start", "works.yaml").returncode == 0
        [ok] = smtp.sink.received
        assert ok.message["Subject"] == "[OK] works (succeeded)" and ok.rcpt_tos == ["team@example.com"]
        assert list(ok.message.iter_attachments()) == []
    finally:
        smtp.stop()


def test_a_notification_that_cannot_be_sent_neither_fails_nor_hangs_the_run(env: Env) -> None:
    hole = Blackhole()
    try:
        env.write("quiet.yaml", f"""
            smtp: {{host: 127.0.0.1, port: {hole.port}, timeout: 1}}
            mail_on: {{success: true}}
            info_mail: {{from: dagu@example.com, to: team@example.com}}
            steps:
              - command: "true"
            """)
        env.write("refused.yaml", f"""
            smtp: {{host: 127.0.0.1, port: {free_port()}}}
            mail_on: {{failure: true}}
            error_mail: {{from: dagu@example.com, to: team@example.com}}
            steps:
              - command: "false"
            """)
        started = time.monotonic()
        res = env.run("start", "quiet.yaml", timeout=30)
        assert res.returncode == 0, res.stderr
        assert time.monotonic() - started < 10
        assert env.status("quiet")["status"] == "succeeded"
        res2 = env.run("start", "refused.yaml", timeout=30)
        assert env.status("refused")["status"] == "failed"
        for dag, text in (("quiet", "timed out"), ("refused", "connection refused")):
            [log] = list((env.home / "runs" / dag).glob("*/logs/notify.log"))
            line = log.read_text()
            assert "warning: the" in line and "notification mail was not sent" in line and text in line, line
        assert "connection refused" in res2.stderr
        _no_traceback(env, res2)
    finally:
        hole.close()


def test_compile_errors_are_located_and_compiling_imports_no_smtp_client(env: Env) -> None:
    path = env.write("typo.yaml", """
        steps:
          - id: send
            type: mail
            with:
              from: a@example.com
              to: b@example.com
              host: 127.0.0.1
              tls: startls
              atachments: [x]
        """)
    res = env.run("compile", str(path), "-o", str(env.dir / "out"))
    assert res.returncode != 0
    assert "typo.yaml:9:" in res.stdout + res.stderr and "did you mean 'starttls'" in res.stdout + res.stderr
    assert "typo.yaml:10:" in res.stdout + res.stderr and "did you mean 'attachments'" in res.stdout + res.stderr
    ok = env.write("ok.yaml", """
        steps:
          - id: send
            type: mail
            with: {from: a@example.com, to: b@example.com, host: 127.0.0.1}
        """)
    code = ("import sys; from dagu.cli import main\n"
            f"try:\n    main(['compile', {str(ok)!r}, '-o', {str(env.dir / 'out')!r}])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in ('smtplib', 'dagu.executors.mail', 'dagu.executors.smtp_send') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=env.dir, env=env.env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_example_compiles(env: Env) -> None:
    res = env.run("compile", str(REPO / "examples" / "mail.yaml"), "-o", str(env.dir / "out"))
    assert res.returncode == 0, res.stdout + res.stderr
