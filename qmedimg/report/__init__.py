"""Reports: plots (:mod:`~qmedimg.report.plots`), the noise study's curves and summary
(:mod:`~qmedimg.report.noise_study`), the comparison table (:mod:`~qmedimg.report.comparison`) and the reliability
diagram (:mod:`~qmedimg.report.calibration`)."""
