from scaleout.cli import main

raise SystemExit(main())
