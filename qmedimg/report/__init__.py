"""Reports: plots (:mod:`~qmedimg.report.plots`), the noise study's curves and summary
(:mod:`~qmedimg.report.noise_study`), and the comparison table (:mod:`~qmedimg.report.comparison`)."""
