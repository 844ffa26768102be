from dtr.cli import main

raise SystemExit(main())
