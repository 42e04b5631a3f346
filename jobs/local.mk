EXTRA_DIST += jobs/README.md jobs/setup.sh jobs/quickstart.sh
