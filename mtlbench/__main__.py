from mtlbench.cli.app import main

main()
