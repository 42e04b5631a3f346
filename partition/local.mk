noinst_LIBRARIES += libfurrow_partition.a
libfurrow_partition_a_SOURCES = \
	partition/layout.c partition/layout.h \
	partition/perf.c partition/perf.h \
	partition/plan.c partition/plan.h \
	partition/shard.c partition/shard.h
