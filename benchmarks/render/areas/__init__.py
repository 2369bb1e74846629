"""One module per area; importing each registers its blocks (and its scan rules' effects)."""

from benchmarks.render.areas import (  # noqa: F401
    control,
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
