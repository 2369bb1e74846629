"""One module per area; importing each registers its blocks (and its scan rules' effects)."""

from benchmarks.render.areas import (  # noqa: F401
    core,
    hardware,
    llm,
    loop,
    nlp,
    production,
    recsys,
    scale,
    scan,
    vision,
)
