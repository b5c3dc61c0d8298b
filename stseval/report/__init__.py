"""Grids, markdown and plots made from result rows, with how they were produced.

Modules, upstream first; each imports only modules above it:

    ordering    the order of tasks, poolings, methods, splits and dims in every grid, plot and table
    rows        result rows in: load, filter, resolve re-runs, pick metric and split, normalise types
    references  published tables (Su 2021/2022, mteb, C-MTEB) as rows beside ours
    grids       the pivot: wide grid out (build_grid), with averages and intervals
    provenance  how a grid was produced, from its rows only
    tables      a grid as CSV and markdown text
    heatmap     a grid as heatmap PNG pages: key columns, shaded cells, colour bar, model key
    drawing     PNG figures of runs: SimCSE training curves, the retrieval sweep
    seeds       mean +- sd over seeds (--over-seeds)
    plots       the whitening studies' rotation / layers plots, each with its table
    write       write_report / write_run_grid: the files `stseval report` and the runs write
"""
