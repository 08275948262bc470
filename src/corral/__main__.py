from corral._entry import main

raise SystemExit(main())
