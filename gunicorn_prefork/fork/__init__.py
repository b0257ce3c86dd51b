"""What crosses the fork between the master and its workers: the shared ground.

Both sides import these modules; none of them imports a side.

=======================  ==============================================================
:mod:`.child_plan`       what a worker gets at its fork (its sockets to keep, boot
                         delay, logger, progress counter, rescue channel), passed
                         explicitly; the child's at-fork handler
:mod:`.early_signals`    stop signals that reach a worker before its own handlers are
                         in place: kept and raised again once they are
:mod:`.child`            which side of the fork this process is on (``is_child``)
:mod:`.parent_death`     a worker dies with its master (``PR_SET_PDEATHSIG``)
:mod:`.progress`         the shared page of per-slot counters the workers bump and
                         the master's stall watch reads
:mod:`.rescue_channel`   the per-slot socket pair a moved connection crosses
                         (``SCM_RIGHTS``), and the descriptor kept in reserve for it
:mod:`.leaving`          a worker's announcement that it leaves on its own (the
                         heartbeat file's size) and its wake-up of the master
=======================  ==============================================================
"""
