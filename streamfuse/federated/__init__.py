"""Federated learning: sites share model parameters and example counts, never data.

:mod:`.merge` turns every learner the engine uses into plain arrays and names, and merges
several parties' states into one (FedAvg, weighted by the examples each party learnt since
the last round). Nothing here does I/O.
"""
