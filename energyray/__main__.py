from energyray.cli import main

main()
