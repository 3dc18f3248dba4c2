"""nox sessions: tests, lint, docs, bench; each installs kinsul from this checkout (torch pinned: CPU wheel)."""

import nox

nox.options.sessions = ["lint", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    # the example plugins are part of the suite (tests/plugins/)
    session.install(
        "-e",
        ".[dev,postgres,metaworld]",
        "-e",
        "tests/plugins/kinsul_anchor",
        "-e",
        "tests/plugins/kinsul_topk",
    )
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def docs(session: nox.Session) -> None:
    """The docs site, strict: a broken link or a page missing from the nav fails the build."""
    # the reference pages import kinsul and list the plugins' strategies
    session.install("-e", ".[dev]", "-e", "tests/plugins/kinsul_anchor", "-e", "tests/plugins/kinsul_topk")
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Run every benchmark and rewrite docs/benchmarks.{json,md}."""
    session.install("-e", ".")
    session.run("kinsul", "bench", *(session.posargs or ["all"]))
