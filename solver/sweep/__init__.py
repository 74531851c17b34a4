"""Scenario sweeps (a package: ``axes`` loads and applies, ``execute`` runs, ``results`` tabulates): solve the fleet MILP over the Cartesian product of named axes (price shocks, SLOs, demand).

A sweep file names a base scenario and the axes to vary::

    name: price-shock
    base: sweep_base.yaml            # relative to the sweep file
    axes:
      price.gpu.H100: [0.5, 1.0, 2.0]
      slo_scale: [0.5, 1, 2]
      pricing: [on_demand, both]

Axes (every value list is non-empty; the sweep is the product of all of them, in the order written):

=========================  ==============================================================================
``price.gpu.<GPU>``        multiply on-demand and spot prices of instances with that GPU (e.g. ``H100``)
``price.cloud.<cloud>``    ... of one cloud (``aws``, ``gcp``, ``azure``)
``price.family.<family>``  ... of one instance family: the type name up to a ``.``, ``-`` or ``_`` (``g6e``)
``price.type.<type>``      ... of one instance type (``p5.4xlarge``)
``price_multiplier``       ... of every instance
``reserved_discount``      multiply on-demand prices by ``1 - d`` (``0 <= d < 1``); spot prices unchanged
``spot_share``             at most this share of the fleet's GPU-hours on spot VMs (sets ``pricing: both``
                           unless a ``pricing`` axis says otherwise)
``pricing``                the scenario's ``on_demand`` / ``spot`` / ``both`` (workloads that pin their own
                           ``pricing`` keep it)
``slo_scale``              multiply every TTFT/TPOT/E2E bound; divide every min-TPS bound (deadlines of
                           offline jobs are not latency bounds and stay)
``demand_growth``          multiply request rates and offline request counts
``regions``                a list of region lists, e.g. ``[[us-east-1], [us-east-1, us-west-2]]``
``commitment_discount``    multiply every commitment (reserved) price by ``k`` (``0 < k <= 10``; 1 = as
                           published): only plans with rate profiles hold committed VMs
=========================  ==============================================================================

Prices change by transforming ``Resolved.instances`` (the catalog the base scenario resolved to); the scenario
itself changes with ``model_copy``. Each point is one ``plan()`` call. A point without a plan (no instance meets
the SLO, or the limits cannot all hold) is recorded with status ``infeasible`` and its reason, never raised.

Results are a tidy table, one row per point x assignment (a point without a plan has one row with empty
assignment fields). Axis values are the columns ``axis.<name>`` (region lists are joined with ``,``), so an
axis named like a plan field (``pricing``) never clashes with the assignment's own column.
"""
from __future__ import annotations

from .axes import PLAIN_AXES, PRICE_KEYS, PRICINGS, LoadedSweep, Sweep, apply_point, load_sweep, make_sweep, parse_sweep
from .execute import (
                   DASK_TIMEOUT_S,
                   MAX_POINT_TIME_LIMIT_S,
                   MAX_POINTS,
                   SweepStopped,
                   check_limits,
                   default_workers,
                   run_sweep,
                   solve_point,
)
from .results import (
                   ASSIGNMENT_FIELDS,
                   AXIS_PREFIX,
                   INT_FIELDS,
                   POINT_FIELDS,
                   SOLVED,
                   TABLE_FIELDS,
                   axis_cell,
                   axis_columns,
                   exit_code,
                   label_axis,
                   merge_tables,
                   output_kind,
                   partial_path,
                   read_results,
                   results_table,
                   resume_table,
                   summary_table,
                   write_results,
)

__all__ = ["DASK_TIMEOUT_S", "MAX_POINTS", "MAX_POINT_TIME_LIMIT_S", "SweepStopped", "check_limits",
           "merge_tables", "partial_path", "resume_table", "ASSIGNMENT_FIELDS", "AXIS_PREFIX", "INT_FIELDS", "PLAIN_AXES", "POINT_FIELDS", "PRICE_KEYS", "PRICINGS",
           "SOLVED", "TABLE_FIELDS", "LoadedSweep", "Sweep", "apply_point", "axis_cell", "axis_columns",
           "default_workers", "exit_code", "label_axis", "load_sweep", "make_sweep", "output_kind", "parse_sweep",
           "read_results", "results_table", "run_sweep", "solve_point", "summary_table", "write_results"]
