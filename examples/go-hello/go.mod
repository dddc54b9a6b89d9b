module wedge.example/hello

go 1.27
