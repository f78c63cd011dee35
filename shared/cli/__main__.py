from shared.cli.main import main

raise SystemExit(main())
