module wedge.dev/sdk

go 1.24
