noinst_LIBRARIES += libfurrow_partition.a
libfurrow_partition_a_SOURCES = \
	partition/plan.c partition/plan.h \
	partition/shard.c partition/shard.h
