/*
 * floor.c - a library with nothing in it, for `make bench-real`: a run that
 * preloads it, linked as the shim is, measures what loading any library
 * costs a program (the loader's work at every exec, the larger address
 * space at every fork), below which no preloaded library can go.
 */
int ipcd_bench_floor;
