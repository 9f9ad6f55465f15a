from authz_service.keys.cli import main

main()
