#!/bin/bash
# t_shared.sh - t_coord.sh's checks on channels coordinated by one shared
# ring (-o coord=shared): the same pipe rules, the other design.
T_COORD=shared exec bash "$top_srcdir/tests/t_coord.sh"
