"""Airflow-side pieces the stockml DAGs share: assets, default arguments, callbacks, operators.

Lives in the Airflow plugins folder (on ``sys.path`` for the scheduler, the DAG processor and
the workers), so DAG files stay thin and the ML library (``training/``) stays free of Airflow.
"""
