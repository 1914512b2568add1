"""Start os-ken applications, as the `osken-manager` command of older os-ken
releases did (os-ken 4 ships the framework without that command):

    python3 -m tests.osken_apps.run --ofp-tcp-listen-port 6653 \
        tests.osken_apps.learning_switch

Any os-ken option (`--ofp-listen-host`, ...) is accepted before the apps.
The OpenFlow handler (handshake, echo) is always loaded.
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str]) -> None:
    from os_ken import cfg
    from os_ken.base.app_manager import AppManager
    from os_ken.controller import controller  # noqa: F401  (registers the ofp-* options)

    cfg.CONF.register_cli_opts([cfg.MultiStrOpt("app", positional=True, default=[])])
    cfg.CONF(args=argv, project="os_ken")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    apps = [*cfg.CONF.app, "os_ken.controller.ofp_handler"]
    AppManager.run_apps(apps)


if __name__ == "__main__":
    main(sys.argv[1:])
