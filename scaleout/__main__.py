from scaleout.cli.main import main

raise SystemExit(main())
