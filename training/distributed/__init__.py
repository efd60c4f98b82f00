"""Running the zoo on a cluster: Spark sessions, the Spark engine and the long contract as Spark frames.

Imported only when ``STOCKML_ENGINE=spark`` (or by a caller that asks for it): the pandas path never
loads pyspark.
"""
