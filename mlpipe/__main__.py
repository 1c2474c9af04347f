from mlpipe.cli.app import main

main()
