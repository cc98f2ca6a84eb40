from framework.master.cli import main

raise SystemExit(main())
