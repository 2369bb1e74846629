"""The optimize loop: profile, propose, try the best change, keep what is proven, repeat.

:mod:`.planner` ranks the plugins' proposals; :mod:`.optimize` starts the loop and
:mod:`.run` runs it (with :mod:`.splits`, :mod:`.ledger`, :mod:`.recording` and
:mod:`.final`); :mod:`.recipes` writes and loads the recipe that replays the kept changes;
:mod:`.store` is the run store in ``.pipetune/`` (:mod:`.paths` finds it).
"""
