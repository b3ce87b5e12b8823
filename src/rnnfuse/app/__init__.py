"""The forecasting application: a local + global encoder forecaster on a univariate series.

Modules: ``data`` (CSV reading, the embedded CO2 series), ``windows`` (local/global windows,
splits, scaling), ``model`` (building the :class:`~rnnfuse.seq2seq.Seq2Seq` for a fusion),
``training`` (loop, checkpoints, resume, signals), ``checkpoint``, ``distributed``
(torchrun), ``metrics`` (errors, seasonal baselines), ``predict``, ``demo``, ``plots`` and
``commands`` (the ``demo``, ``train`` and ``predict`` subcommands of ``rnnfuse``).

An optional part: ``pip install 'rnnfuse[forecast]'`` adds what it needs beyond the core
(matplotlib for ``plots``, tqdm for the progress bar of ``training``, statsmodels for the
classical baselines of ``demo``).
"""
