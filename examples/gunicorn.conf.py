# gunicorn.conf.py for gunicorn-prefork: run with
#     gunicorn -c examples/gunicorn.conf.py examples.app:app
# Every Gunicorn setting works as usual; the prefork_* ones are read by the plugin
# (and can be overridden by GUNICORN_PREFORK_<NAME> environment variables).

bind = "127.0.0.1:8000"           # several binds, [::]:PORT and port 0 work too
workers = 3                        # one SO_REUSEPORT listening socket per worker
worker_class = "gunicorn_prefork.Worker"

# True: per-worker SO_REUSEPORT sockets owned by the master (the point of the package).
# False: Gunicorn's one shared socket (the recovery threshold and logger still apply).
prefork_reuseport = True

# Recovery threshold (fasthttp's RecoverThreshold): halt the master when more than
# this many worker crashes happen within prefork_recover_window seconds.
# prefork_recover_threshold = 6     # default: max(5, 2 * workers); 0 = never halt
# prefork_recover_window = 60       # 0 = over the master's whole life
# prefork_recover_interval = 0      # seconds before a crashed worker's replacement
# prefork_count_timeouts = False    # count worker timeouts as crashes

# Logger for the plugin's own messages: None = Gunicorn's error log.
# prefork_logger = "logging.root"   # an object or a dotted path

# Hooks (fasthttp OnMasterReady / OnChildRecover):
# def prefork_on_ready(server, workers): ...            # all initial workers serving
# def prefork_on_recover(server, old_worker, new_worker): ...  # crashed worker replaced
